"""The command line: ``logitkit tour`` and its options."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from logitkit._cli import main
from logitkit._tour import SECTIONS, WIDTH

NAMES = [s.name for s in SECTIONS]
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable that makes rich colour or resize a captured stream."""
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)


def _tour(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["tour", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _headings(out: str) -> list[str]:
    """The names of the sections whose headings `out` holds."""
    return [n for n in NAMES if re.search(rf"^{re.escape(n)}: ", out, re.MULTILINE)]


def test_tour_runs_every_section_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    out = _tour(capsys)
    assert _headings(out) == NAMES
    starts = [out.index(f"\n{n}: ") for n in NAMES]
    assert starts == sorted(starts)


def test_tour_shows_the_note_beside_logitkit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _tour(capsys)
    assert "0.8437947'" in out  # the note's tf.nn.softmax value
    assert "0.84379476" in out  # logitkit's, correctly rounded
    assert "0.99999994" in out  # the note's float32 sum
    assert "-4.3265624" in out  # the note's log-softmax
    assert "[3, 4, 0]" in out  # ... which is that of x = [3, 4, 0]
    assert "-200" in out  # log_softmax([0, 200])[0]
    assert "-inf" in out  # log(softmax([0, 200]))[0]
    assert "9.999991e-14" in out  # -log_softmax of the confident row
    assert "[[0., 0., 1., 0., 0.]," in out  # one_hot([2, 1, 3], 5)
    assert "Traceback" not in out


def test_plain_output_fits_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    out = _tour(capsys)
    lines = out.splitlines()
    assert len(lines) > 100
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long
    assert not [line for line in lines if line != line.rstrip()]
    assert out.isascii()


def test_no_ansi_escapes_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _tour(capsys)
    assert not ANSI.search(out)
    # plain headings are underlined
    assert "\nsoftmax: " in out
    assert "\n=====" in out


def test_colour_on_a_terminal_and_no_color(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: treat stdout as a terminal
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ANSI.search(_tour(capsys, "--section", "sigmoid"))
    assert not ANSI.search(_tour(capsys, "--section", "sigmoid", "--no-color"))


def test_list_names_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    out = _tour(capsys, "--list")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    assert all(len(line) <= WIDTH for line in lines)
    assert "0.84379476" not in out  # listed, not run


@pytest.mark.parametrize("name", NAMES)
def test_section_prints_only_that_section(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    out = _tour(capsys, "--section", name)
    assert _headings(out) == [name]
    assert out.lstrip().startswith(f"{name}: ")


def test_seed_makes_the_output_reproducible(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ("--section", "float32-sums")
    first = _tour(capsys, *args, "--seed", "3")
    assert _tour(capsys, *args, "--seed", "3") == first
    assert _tour(capsys) == _tour(capsys, "--seed", "0")  # the default seed
    other = _tour(capsys, *args, "--seed", "4")
    assert other != first
    # the random rows differ, the note's fixed example does not
    row = re.compile(r"^  \[.*\]$", re.MULTILINE)
    assert row.findall(other) != row.findall(first)
    fixed = "the note's tf row | 0.99999994"
    assert fixed in first
    assert fixed in other


def test_unknown_section_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["tour", "--section", "nope"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "invalid choice" in err
    assert "nope" in err
    for name in NAMES:
        assert name in err


@pytest.mark.parametrize("args", [["tour", "--seed", "x"], ["tour", "extra"], ["no"]])
def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "usage: logitkit" in capsys.readouterr().err


def test_no_subcommand_prints_help_and_returns_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: logitkit" in err
    assert "tour" in err


def test_help_lists_the_sections(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["tour", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out


def test_python_m_logitkit() -> None:
    """Smoke test of the installed entry point, and its start-up time."""
    res = subprocess.run(
        [sys.executable, "-m", "logitkit", "tour", "--section", "sigmoid"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.lstrip().startswith("sigmoid: ")
    assert not ANSI.search(res.stdout)  # piped: plain text

    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "logitkit", "tour", "--list"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == NAMES[0]
    assert elapsed < 2.0  # about 0.15 s; the budget is 1 s, doubled against noise


def test_cli_imports_no_array_library() -> None:
    """``--list`` and ``--help`` need neither NumPy nor rich, let alone torch."""
    code = (
        "import sys\n"
        "from logitkit._cli import main\n"
        "main(['tour', '--list'])\n"
        "heavy = ('numpy', 'rich', 'torch', 'jax', 'scipy')\n"
        "print('loaded:', [m for m in heavy if m in sys.modules])\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "loaded: []" in res.stdout
