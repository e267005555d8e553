"""The README's example runs and learns, and its two commands are the ones CI runs."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_example_trains(capsys):
    text = (ROOT / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    accuracy = float(capsys.readouterr().out.split()[-1])
    assert accuracy > 0.95


def test_ci_runs_the_readme_test_command():
    commands = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    test_command = commands.splitlines()[1].split("#")[0].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
