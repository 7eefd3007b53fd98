from conftest import AUTH, decode, jpeg_bomb, png_bomb


def test_a_resized_jpeg_comes_back_at_the_asked_width(uploaded):
    r = uploaded.get("/t/_/photo.jpg?w=200")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert decode(r.content).width == 200


def test_bomb_headers_are_what_they_claim():
    assert decode(png_bomb(30000, 20000)).width == 30000
    assert decode(jpeg_bomb(20000, 20000)).height == 20000


def test_admin_needs_a_token(client):
    assert client.get("/v1/assets/x.jpg").status_code == 401
    assert client.get("/v1/assets/x.jpg", headers=AUTH).status_code == 404
