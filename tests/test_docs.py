"""docs/ is the reference users trust: its tables, examples and links must match the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import decode
from doc_examples import run_examples, section

from server import errors
from server.app import create_app
from server.names import validate_id, validate_template_name
from server.settings import Settings, settings_table
from server.signing import sign
from server.spec import Limits, parse_params, query_pairs
from server.templates import parse_template

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
SECRET = "imgcdn-example-secret-0123456789abcdef"
WORKED_EXAMPLE = (
    "/t/card/products/42.jpg?w=800&fmt=auto&exp=1893456000"
    "&sig=Hr7hEyYXsFLl7AT2u62mVLXuRu7ZHJxIYKSXsVNMbxc"
)


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def code_block(text: str, language: str, after: str) -> str:
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start : text.index("```", start)]


def without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def test_the_docs_list_every_setting_exactly_as_the_code_describes_it():
    operations = page("operations.md")
    for row in settings_table().splitlines()[2:]:
        assert row in operations, f"docs/operations.md is missing or has a stale row: {row}"


def test_the_python_signer_in_the_docs_prints_the_worked_example(capsys):
    snippet = code_block(page("templates-and-signing.md"), "python", "Python (standard library")
    exec(snippet, {})  # noqa: S102  # our own documentation's snippet
    assert capsys.readouterr().out.strip() == WORKED_EXAMPLE


def test_the_javascript_signer_in_the_docs_prints_the_worked_example(tmp_path):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed in CI to check the docs' JavaScript signer")
        pytest.skip("node is not installed")
    script = tmp_path / "sign.mjs"
    script.write_text(code_block(page("templates-and-signing.md"), "js", "JavaScript (Node"))
    out = subprocess.run([node, str(script)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == WORKED_EXAMPLE


def test_the_worked_example_is_what_the_server_signs():
    assert sign(WORKED_EXAMPLE.split("&sig=")[0], SECRET) == WORKED_EXAMPLE
    assert WORKED_EXAMPLE in page("templates-and-signing.md")


def test_the_template_example_in_the_docs_is_a_valid_template():
    example = code_block(page("templates-and-signing.md"), "sh", "## Templates")
    body = json.loads(example.split("-d '", 1)[1].rsplit("'", 1)[0])
    template = parse_template("card", body, Limits(), 1)
    assert template.public and template.watermark is not None


def documented_delivery_urls(text: str) -> list[str]:
    urls = re.findall(r"/t/[^\s\"'`<>)]+", text)
    return [url for url in urls if "{" not in url and "…" not in url]  # not placeholders


def documented_queries(text: str) -> list[str]:
    """Inline code that is a query or part of one: `?w=5&q=80`, `w=400&dpr=2`."""
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s for s in spans if re.fullmatch(r"\??[a-z]+=[^\s&<>]+(&[a-z]+=[^\s&<>]+)*", s)]


def test_every_delivery_url_in_the_docs_parses():
    urls = [url for doc in PAGES for url in documented_delivery_urls(doc.read_text())]
    assert len(urls) >= 10
    for url in urls:
        path, _, query = url.partition("?")
        _, _, name, asset_id = path.split("/", 3)
        validate_template_name(name)
        validate_id(unquote(asset_id))
        params = query_pairs(query)
        params.pop("sig", None)
        parse_params(params, Limits())  # a documented example is never a 400


def test_every_parameter_example_in_the_delivery_docs_parses():
    queries = documented_queries(page("delivery.md"))
    assert {"w=400&dpr=2", "?w=5&q=80", "w=800"} <= set(queries)
    for query in queries:
        parse_params(query_pairs(query.removeprefix("?")), Limits())


EXAMPLE_ROW = re.compile(
    r"^\| `(/t/[^`]+)` \| (\d+)x(\d+) (JPEG|PNG|WebP|GIF)\b(.*) \|$", re.MULTILINE
)
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WebP": "image/webp", "GIF": "image/gif"}


def test_every_example_in_the_delivery_docs_renders_as_described(uploaded):
    rows = EXAMPLE_ROW.findall(section(page("delivery.md"), "### Examples"))
    assert len(rows) >= 15
    for url, width, height, kind, said in rows:
        r = uploaded.get(url)
        assert r.status_code == 200, f"{url}: {r.text}"
        assert r.headers["content-type"] == MIME[kind], url
        image = decode(r.content)
        fields = image.get_fields()
        frames = image.get("n-pages") if "n-pages" in fields else 1
        page_height = image.get("page-height") if "page-height" in fields else image.height
        assert (image.width, page_height) == (int(width), int(height)), url
        if match := re.search(r"all (\d+) frames", said):
            assert frames == int(match[1]), url
        if "first frame only" in said:
            assert frames == 1, url
        if match := re.search(r"maxbytes=(\d+)", url):
            assert len(r.content) <= int(match[1]), url
        if "immutable" in said:
            assert "immutable" in r.headers["cache-control"], url


def test_the_admin_examples_run_and_print_what_the_docs_show(tmp_path):
    # The state they start from is the README walk-through's, up to its signing step.
    before_signing = section(README, "## A walk-through").split("**Signed URLs.**")[0]
    stop = "```sh\nkill $SERVER; wait $SERVER\n```\n"
    examples = section(page("admin-api.md"), "### Examples")
    steps = run_examples(before_signing + examples + stop, tmp_path)

    assert steps >= 15
    assert (tmp_path / "original.jpg").read_bytes() == (
        ROOT / "tests/images/photo.jpg"
    ).read_bytes()


def error_rows(text: str) -> set[tuple[int, str]]:
    return {
        (int(status), code)
        for status, code in re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", text, re.MULTILINE)
    }


def server_errors() -> set[tuple[int, str]]:
    found, todo = set(), [errors.ImgcdnError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("server."):  # not a test's own subclass
            found.add((cls.status, cls.code))
        todo.extend(cls.__subclasses__())
    return found


def nginx_errors() -> set[tuple[int, str]]:
    conf = (ROOT / "nginx.conf").read_text(encoding="utf-8")
    return {
        (int(status), code)
        for status, code in re.findall(
            # `return 405 '{"error": …` lines, and the `map $status $imgcdn_error` entries
            r"(?:return |^\s*)(\d{3}) '\{\s*\"error\":\s*\{\s*\"code\":\s*\"(\w+)\"",
            conf,
            re.MULTILINE,
        )
    }


def test_the_error_table_lists_every_code_the_server_and_nginx_answer():
    documented = error_rows(section(page("admin-api.md"), "## Errors"))
    assert len(server_errors()) >= 24
    assert server_errors() - documented == set(), "codes in server/errors.py the docs lack"
    assert nginx_errors() - documented == set(), "codes in nginx.conf the docs lack"
    assert documented - server_errors() - nginx_errors() == set(), "documented codes no one answers"


def documented_routes(name: str, processing: bool) -> set[tuple[str, str]]:
    return {
        (method, path.split("?")[0])
        for method, path in re.findall(r"`(GET|PUT|POST|DELETE|PATCH) (/v1/[^`\s]*)`", page(name))
        if path.startswith("/v1/image/") == processing
    }


def app_routes(processing: bool) -> set[tuple[str, str]]:
    return {
        (method, route.path.replace(":anypath", ""))
        for route in create_app(Settings()).routes
        if route.path.startswith("/v1/") and route.path.startswith("/v1/image/") == processing
        for method in route.methods - {"HEAD"}
    }


def test_the_admin_docs_list_every_admin_route_and_method():
    assert app_routes(processing=False) == documented_routes("admin-api.md", processing=False)


def test_the_processing_docs_list_every_processing_route_and_method():
    assert app_routes(processing=True) == documented_routes("processing-api.md", processing=True)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_\[\]]|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", markdown.read_text(), flags=re.DOTALL | re.MULTILINE)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


MIGRATING = sorted((DOCS / "migrating").glob("*.md"))  # one page per drop-in seed
LINKED = [ROOT / "README.md", *PAGES, *MIGRATING, ROOT / "deploy" / "README.md"]


@pytest.mark.parametrize("source", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_its_anchor(source):
    links = re.findall(r"\]\(([^)\s]+)\)", without_code(source.read_text(encoding="utf-8")))
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not ours to check offline
        target, _, anchor = link.partition("#")
        path = (source.parent / target).resolve() if target else source
        assert path.exists(), f"{source.name}: {link} leads nowhere"
        if anchor:
            assert path.suffix == ".md", f"{source.name}: {link} has an anchor in a non-page"
            assert anchor in anchors(path), f"{source.name}: {link}: no such heading"


def test_the_readme_links_to_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in PAGES:
        assert f"(docs/{doc.name})" in readme


def test_the_migrating_index_links_to_every_seeds_page():
    index = page("migrating.md")
    assert len(MIGRATING) >= 3
    for doc in MIGRATING:
        assert f"(migrating/{doc.name})" in index


def test_the_processing_examples_run_and_print_what_the_docs_show(tmp_path):
    examples = section(page("processing-api.md"), "## Examples")
    assert run_examples(examples, tmp_path) >= 9
