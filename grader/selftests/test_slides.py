"""The lecture decks (slides/*.md): built, and checked in a real browser.

slides/check.mjs renders every slide in Debian's headless Chromium (driven by
puppeteer-core, pinned in slides/package-lock.json) and fails on a slide
with content cut off or in the margin, text or code under 20 px once every
scaling is applied, a missing image, anything loaded from the network, or a
slide count other than the deck's `slides: N`. The fixture decks here show
that it fails on each of these, on the slide that has it, and passes the
same deck without it. slides/build.mjs (make slides) must write the HTML and
both PDFs of a deck.

The tools are installed as `make slides-deps` installs them (a no-op once
done): Debian's chromium, then `npm ci` in slides/.
"""
from __future__ import annotations

import re
import subprocess
import zlib
from pathlib import Path

import pytest

from gradelib.cli import REPO

SLIDES = REPO / "slides"


def node(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["node", *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def slide_tools() -> None:
    res = subprocess.run(["make", "-s", "-C", str(REPO), "slides-deps"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=900)
    assert res.returncode == 0, f"make slides-deps failed:\n{res.stdout}"


def decks() -> list[Path]:
    return sorted(p for p in SLIDES.glob("*.md")
                  if re.search(r"\A---\n(?:.*\n)*?marp: true\n", p.read_text()))


def declared(deck: Path) -> int | None:
    m = re.search(r"\A---\n(?:.*\n)*?slides: (\d+)\n(?:.*\n)*?---\n", deck.read_text())
    return int(m.group(1)) if m else None


# --- the project's decks ----------------------------------------------------

def test_every_deck_passes_the_browser_check(tmp_path: Path) -> None:
    res = node("slides/check.mjs", "--shots", str(tmp_path))
    assert res.returncode == 0, (
        "slides/check.mjs found problems (PNGs of the slides are named after each line):\n"
        + res.stdout)
    assert f"check: {len(decks())} deck(s)" in res.stdout, res.stdout


def test_the_instructors_guide_lists_every_deck_with_its_slide_count() -> None:
    guide = (SLIDES / "README.md").read_text()
    rows = dict(re.findall(r"^\| \[`([\w-]+\.md)`\]\([\w-]+\.md\) \|[^|\n]*\| (\d+) \|", guide, re.M))
    for deck in decks():
        assert deck.name in rows, f"slides/README.md: the deck table has no row for {deck.name}"
        assert int(rows[deck.name]) == declared(deck), (
            f"slides/README.md says {deck.name} has {rows[deck.name]} slides; "
            f"its front matter says slides: {declared(deck)}")


@pytest.mark.parametrize("deck", [d for d in decks() if (REPO / "labs" / d.stem).is_dir()],
                         ids=lambda d: d.name)
def test_a_lab_decks_tasks_slide_matches_its_chapter(deck: Path) -> None:
    chapter = REPO / "labs" / deck.stem / "README.md"
    want = re.findall(r"^### Task (\d+): (.+) \((\d+) points\)$", chapter.read_text(), re.M)
    have = re.findall(r"^\| (\d+): (.+) \((\d+)\) \|", deck.read_text(), re.M)
    assert want, f"no '### Task N: Title (P points)' in {chapter.relative_to(REPO)}"
    assert have == want, (
        f"{deck.name}'s tasks slide says {have}; {chapter.relative_to(REPO)} says {want}")


# --- the check fails where it must (fixture decks) ------------------------------

GOOD = "# A slide that fits\n\n- one point\n- another\n\n```c\nint main(void) { return 0; }\n```\n"

FIXTURES = {
    # slide 2: twenty bullets run past the bottom edge
    "overflow": [GOOD, "# Too much\n\n" + "".join(f"- point {i}\n" for i in range(20))],
    # slide 2: one long line; Marp's auto-scaling shrinks the whole block
    "shrunk": [GOOD, "# Wide code\n\n```c\nint main(void) { return printf(\"%s %s %s\\n\", "
               "\"aaaaaaaaaaaaaaaa\", \"bbbbbbbbbbbbbbbb\", \"cccccccccccccccc\", \"dddddddddd\"); }\n```\n"],
    # slide 2: a block scaled by a CSS transform
    "transform": [GOOD, "<style scoped>pre { transform: scale(0.6); }</style>\n\n# Scaled\n\n"
                  "```c\nint x;\n```\n"],
    # slide 2: a code block with a fixed height clips its last lines
    "clipped": [GOOD, "<style scoped>pre { height: 80px; overflow: hidden; }</style>\n\n# Clipped\n\n"
                "```c\nint a;\nint b;\nint c;\nint d;\nint e;\n```\n"],
    # slide 2: an image that is not there; slide 3: one from the web
    "images": [GOOD, "# Missing\n\n![figure](no-such-figure.png)\n",
               "# Remote\n\n![figure](https://example.com/figure.png)\n"],
}


def fixture_deck(folder: Path, name: str, slides: list[str], count: int | None) -> Path:
    fm = "---\nmarp: true\ntheme: workbook\n" + (f"slides: {count}\n" if count is not None else "") + "---\n\n"
    path = folder / f"{name}.md"
    path.write_text(fm + "\n---\n\n".join(slides))
    return path


@pytest.fixture(scope="module")
def fixture_check(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One check run over all the fixture decks (one Chromium start)."""
    folder = tmp_path_factory.mktemp("decks")
    paths = [fixture_deck(folder, name, slides, len(slides)) for name, slides in FIXTURES.items()]
    paths.append(fixture_deck(folder, "good", [GOOD, GOOD], 2))
    paths.append(fixture_deck(folder, "miscounted", [GOOD, GOOD], 3))
    paths.append(fixture_deck(folder, "uncounted", [GOOD], None))
    shots = folder / "shots"
    res = node("slides/check.mjs", "--shots", str(shots), *map(str, paths))
    assert res.returncode == 1, f"the check should fail on the fixture decks:\n{res.stdout}"
    return res.stdout, shots


def problems(output: str, deck: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{deck}.md")
            and not re.match(rf"{deck}\.md: \d+ slides, ", line)]


def assert_only_slide(output: str, deck: str, slide: int, kind: str, shots: Path) -> None:
    found = problems(output, deck)
    assert found, f"the check found nothing wrong in the {deck!r} fixture:\n{output}"
    assert all(line.startswith(f"{deck}.md slide {slide}: {kind}") for line in found), (
        f"expected only '{deck}.md slide {slide}: {kind}...':\n" + "\n".join(found))
    assert (shots / f"{deck}-{slide:02d}.png").is_file(), f"no PNG of {deck} slide {slide}"
    assert not (shots / f"{deck}-01.png").exists(), f"slide 1 of {deck} is fine but has a PNG"


def test_the_check_passes_a_deck_that_fits(fixture_check) -> None:
    output, _ = fixture_check
    assert not problems(output, "good"), output
    assert "good.md: 2 slides, 0 problem(s)" in output, output


def test_the_check_fails_on_an_overflowing_slide(fixture_check) -> None:
    output, shots = fixture_check
    assert_only_slide(output, "overflow", 2, "cut off", shots)
    assert "past the slide's bottom edge" in output, output


def test_the_check_fails_on_a_code_block_shrunk_to_fit(fixture_check) -> None:
    output, shots = fixture_check
    assert_only_slide(output, "shrunk", 2, "too small", shots)


def test_the_check_fails_on_text_scaled_down_by_a_transform(fixture_check) -> None:
    output, shots = fixture_check
    assert_only_slide(output, "transform", 2, "too small", shots)


def test_the_check_fails_on_a_code_block_that_clips_its_lines(fixture_check) -> None:
    output, shots = fixture_check
    assert_only_slide(output, "clipped", 2, "cut off", shots)
    assert re.search(r"clipped\.md slide 2: cut off: <pre> .* hides \d+ px of height", output), output


def test_the_check_fails_on_a_missing_or_remote_image(fixture_check) -> None:
    output, shots = fixture_check
    found = problems(output, "images")
    assert any(l.startswith("images.md slide 2: missing image: ") and "no-such-figure.png" in l
               for l in found), output
    assert any(l.startswith("images.md slide 3: loads https://example.com/figure.png from the network")
               for l in found), output
    assert (shots / "images-02.png").is_file() and (shots / "images-03.png").is_file()


def test_the_check_fails_on_a_wrong_or_missing_slide_count(fixture_check) -> None:
    output, _ = fixture_check
    assert "miscounted.md: has 2 slides but declares slides: 3" in output, output
    assert "uncounted.md: declares no slide count" in output, output


# --- make slides ------------------------------------------------------------------

def pdf_pages(pdf: Path) -> int:
    """Pages of a PDF, counted in its objects, compressed object streams included."""
    data = pdf.read_bytes()
    chunks = [data]
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            chunks.append(zlib.decompress(m.group(1)))
        except zlib.error:
            pass
    return sum(len(re.findall(rb"/Type\s*/Page(?![s\w])", c)) for c in chunks)


def test_the_build_writes_the_html_and_both_pdfs(tmp_path: Path) -> None:
    deck = fixture_deck(tmp_path, "lecture", [
        GOOD + "\n<!-- notes: the answer is 42 -->\n", "# Second\n\nText.\n", "# Third\n\nMore.\n"], 3)
    out = tmp_path / "out"
    res = node("slides/build.mjs", "--out", str(out), str(deck))
    assert res.returncode == 0, f"slides/build.mjs failed:\n{res.stdout}"
    html = out / "lecture.html"
    assert html.is_file(), f"no {html.name}:\n{res.stdout}"
    text = html.read_text()
    assert "the answer is 42" in text, "the HTML has no presenter notes"
    # Offline: nothing the page loads (src, href, CSS url) is on the web.
    remote = re.findall(r"""(?:src|href)=["']?(https?://[^"' >]+)|url\(["']?(https?://[^"')]+)""", text)
    assert not remote, f"the HTML loads from the web: {remote}"
    for name, pages in (("lecture-handout.pdf", 3), ("lecture-presenter.pdf", 3)):
        pdf = out / name
        assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF-"), f"no {name}"
        assert pdf_pages(pdf) == pages, f"{name} has {pdf_pages(pdf)} pages, not {pages}"
    again = node("slides/build.mjs", "--out", str(out), str(deck))
    assert "lecture: up to date" in again.stdout, again.stdout
