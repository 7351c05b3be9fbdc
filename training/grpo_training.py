"""GRPO training from a YAML config (the same as `grpolab train`).

python training/grpo_training.py --model gpt2                      # local preset
python training/grpo_training.py --model gpt2 --mode cluster       # cluster preset
python training/grpo_training.py --model gpt2 --config configs/my_custom_config.yaml
python training/grpo_training.py                                   # the embedded offline demo
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from grpolab.config.errors import cli_audience  # noqa: E402
from grpolab.train.request import build_parser  # noqa: E402


def main(argv=None) -> int:
    args = build_parser(prog="grpo_training.py").parse_args(argv)
    from grpolab.train.pipeline import run_from_args

    with cli_audience():  # advice in command-line terms (--force), as `grpolab train` gives it
        return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
