"""The README's quickstart as CI runs it: .ci/run prints and runs exactly the first bash block
of "## Set up and run", before tox."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_quickstart_before_tox():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)
    assert block.startswith("apt-get") and "clbench run strategy=naive scenario=split_fmnist seed=0" in block
    ci = (REPO / ".ci" / "run").read_text()
    assert "--print-quickstart" in ci  # else running it below would run the whole CI
    out = subprocess.run([str(REPO / ".ci" / "run"), "--print-quickstart"], capture_output=True, text=True, check=True,
                         timeout=30)
    assert out.stdout.strip() == block.strip()
    assert ci.index('bash -euo pipefail -c "$command"') < ci.index("tox -e py311")
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)
