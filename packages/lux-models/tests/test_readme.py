"""The package README's ```pycon blocks run and print what they show."""

import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_pycon_blocks():
    blocks = re.findall(r"```pycon\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no pycon example"
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for i, text in enumerate(blocks):
        test = doctest.DocTestParser().get_doctest(text, {}, f"README block {i}", str(README), 0)
        runner = doctest.DocTestRunner(optionflags=flags)
        runner.run(test)
        assert runner.failures == 0, f"README block {i} failed (see stdout)"
