"""The repository keeps its promises: CI runs exactly the README's test command."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_cmds = [line for b in blocks for line in b.splitlines() if "pytest" in line]
    assert test_cmds, "README gives no test command"
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_cmds[0] in ci_lines
