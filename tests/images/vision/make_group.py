"""Builds group.jpg: astronaut.png pasted at seven scales onto photo.jpg, with the face
boxes that result from the hand-measured box on astronaut.png (tests/test_vision_faces.py
holds both). Run from the repository root: python tests/images/vision/make_group.py"""

import pyvips

ASTRONAUT_FACE = (174, 70, 104, 112)  # x, y, w, h on astronaut.png, measured by eye
# (left, top, scale, mirrored): faces from 62 to 125 px wide on a 1600x1200 photo
PLACES = [
    (0, 0, 1.0, False),
    (520, 40, 0.9, True),
    (990, 0, 1.2, False),
    (0, 640, 0.7, True),
    (380, 700, 0.8, False),
    (820, 660, 0.75, False),
    (1230, 720, 0.6, True),
]


def boxes() -> list[tuple[int, int, int, int]]:
    out = []
    fx, fy, fw, fh = ASTRONAUT_FACE
    for left, top, scale, mirrored in PLACES:
        side = round(512 * scale)
        x = fx if not mirrored else 512 - fx - fw
        out.append(
            (
                left + round(x * side / 512),
                top + round(fy * side / 512),
                round(fw * side / 512),
                round(fh * side / 512),
            )
        )
    return out


def main() -> None:
    canvas = pyvips.Image.new_from_file("tests/images/photo.jpg").resize(2)
    canvas = canvas.crop(0, 0, 1600, 1200)
    face = pyvips.Image.new_from_file("tests/images/vision/astronaut.png")
    for left, top, scale, mirrored in PLACES:
        side = round(512 * scale)
        piece = face.resize(side / 512, kernel="lanczos3")
        if mirrored:
            piece = piece.fliphor()
        canvas = canvas.insert(piece, left, top)
    canvas.write_to_file("tests/images/vision/group.jpg", Q=85, strip=True)


if __name__ == "__main__":
    main()
    print(boxes())
