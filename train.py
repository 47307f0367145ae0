"""Train one LoRA classifier; with -m, run a hyperparameter sweep over the same task."""

import hydra
from omegaconf import DictConfig

from lorahpo.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    from lorahpo.train import run

    return run(cfg)


if __name__ == "__main__":
    main()
