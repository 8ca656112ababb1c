"""The README and docs/ link to each other and to the code: no dead relative link, no missing anchor."""
import re
from pathlib import Path

from conftest import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def outside_code(text: str, spans: bool = False) -> list[str]:
    """The lines outside fenced blocks; inline code spans dropped (they hold no links) unless `spans`
    (a heading's anchor keeps their text: "## LoRA (`model.lora`)" is #lora-modellora)."""
    lines, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence:
            lines.append(re.sub(r"`[^`]*`", "", line) if "](" not in line and not spans else line)
    return lines


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in outside_code(path.read_text(), spans=True) if line.startswith("#")}


def dead_links(pages: list[Path]) -> list[str]:
    dead = []
    for page in pages:
        for line in outside_code(page.read_text()):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked (no network)
                    continue
                file, _, anchor = target.partition("#")
                dest = (page.parent / file).resolve() if file else page
                if not dest.exists():
                    dead.append(f"{page.name}: {target} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    dead.append(f"{page.name}: {target} (no heading with that anchor)")
    return dead


def test_no_dead_links_in_the_readme_and_docs():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 10
    assert dead_links(pages) == []
    linked = {t.partition("#")[0] for line in outside_code((ROOT / "README.md").read_text()) for t in LINK.findall(line)}
    assert {f"docs/{p.name}" for p in pages[1:]} <= linked  # every page is reachable from the front door


def test_the_checker_finds_a_dead_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Differences from MiniOneRec's arithmetic\n\n"
                                   "[ok](b.md#the-b-page) [gone](c.md) [bad](b.md#nope) [self](#differences-from-minionerecs-arithmetic)\n"
                                   "```\n[in code](zzz.md)\n```\n")
    (tmp_path / "b.md").write_text("# The B page\n\n## LoRA (`model.lora`)\n\n- item\n\n  ```bash\n  [in an indented fence](zzz.md)\n  ```\n"
                                   "[code](#lora-modellora) [code dropped](#lora-)\n")
    assert dead_links([tmp_path / "a.md"]) == ["a.md: c.md (no such file)", "a.md: b.md#nope (no heading with that anchor)"]
    assert dead_links([tmp_path / "b.md"]) == ["b.md: #lora- (no heading with that anchor)"]
