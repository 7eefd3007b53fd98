"""Builds group.jpg and crowd.jpg: astronaut.png pasted at several scales onto photo.jpg,
with the face boxes that result from the hand-measured box on astronaut.png
(tests/test_vision_faces.py reads both from here).
Run from the repository root: python tests/images/vision/make_group.py"""

import pyvips

ASTRONAUT_FACE = (174, 70, 104, 112)  # x, y, w, h on astronaut.png, measured by eye
Place = tuple[int, int, float, bool]  # left, top, scale, mirrored
# group.jpg: faces from 62 to 125 px wide on a 1600x1200 photo (4-8 % of the long side)
GROUP: list[Place] = [
    (0, 0, 1.0, False),
    (520, 40, 0.9, True),
    (990, 0, 1.2, False),
    (0, 640, 0.7, True),
    (380, 700, 0.8, False),
    (820, 660, 0.75, False),
    (1230, 720, 0.6, True),
]
# crowd.jpg: ten small faces, 40 to 62 px wide on 1600x1200 (2.5-3.9 %), two rows
CROWD: list[Place] = [
    ((i % 5) * 320 + 5, (i // 5) * 600 + 100, scale, i % 2 == 1)
    for i, scale in enumerate([0.4, 0.45, 0.5, 0.55, 0.6, 0.38, 0.42, 0.48, 0.52, 0.58])
]


def boxes(places: list[Place] = GROUP) -> list[tuple[int, int, int, int]]:
    out = []
    fx, fy, fw, fh = ASTRONAUT_FACE
    for left, top, scale, mirrored in places:
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


def build(places: list[Place], out: str) -> None:
    canvas = pyvips.Image.new_from_file("tests/images/photo.jpg").resize(2)
    canvas = canvas.crop(0, 0, 1600, 1200)
    face = pyvips.Image.new_from_file("tests/images/vision/astronaut.png")
    for left, top, scale, mirrored in places:
        side = round(512 * scale)
        piece = face.resize(side / 512, kernel="lanczos3")
        if mirrored:
            piece = piece.fliphor()
        canvas = canvas.insert(piece, left, top)
    canvas.write_to_file(out, Q=85, strip=True)


if __name__ == "__main__":
    build(GROUP, "tests/images/vision/group.jpg")
    build(CROWD, "tests/images/vision/crowd.jpg")
    print(boxes(GROUP), boxes(CROWD))
