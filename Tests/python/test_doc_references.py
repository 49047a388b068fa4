"""A comment or doc that sends the reader to `docs/<name>.md, "<title>"` names a section that exists there:
a heading, or a paragraph's bold lead-in, containing the title. Sections get renamed as the
notebook grows; a reference left behind sends the reader nowhere."""

import os
import re

from conftest import ROOT

REFERENCE = re.compile(r'(docs/[A-Za-z0-9_-]+\.md)[,:]? "([^"\n]+)"')
SEARCHED = ("Sources", "python", "Tests", "examples", "docs", "README.md", "Makefile")
SUFFIXES = (".swift", ".c", ".h", ".cu", ".cuh", ".py", ".sh", ".md", "Makefile")


def files():
    for top in SEARCHED:
        path = os.path.join(ROOT, top)
        if os.path.isfile(path):
            yield path
            continue
        for d, dirs, names in os.walk(path):
            dirs[:] = [x for x in dirs if not x.startswith(".") and x != "Fixtures"]
            yield from (os.path.join(d, n) for n in names if n.endswith(SUFFIXES))


def titles(doc):
    with open(os.path.join(ROOT, doc)) as f:
        text = f.read()
    heads = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    bold = re.findall(r"\*\*([^*]+)\*\*", text)
    return [t.lower() for t in heads + bold]


def test_every_section_a_reference_names_exists():
    known, missing, seen = {}, [], 0
    for path in files():
        with open(path, errors="replace") as f:
            text = f.read()
        for doc, title in REFERENCE.findall(text):
            seen += 1
            if doc not in known:
                known[doc] = titles(doc) if os.path.exists(os.path.join(ROOT, doc)) else None
            if known[doc] is None or not any(title.lower() in t for t in known[doc]):
                missing.append(f'{os.path.relpath(path, ROOT)}: {doc}, "{title}"')
    assert seen > 20, "the pattern no longer finds the references"
    assert not missing, "references to sections that do not exist:\n" + "\n".join(missing)
