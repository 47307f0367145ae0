"""Write class probabilities for a test CSV with the adapter of a training run."""

import hydra
from omegaconf import DictConfig

from lorahpo.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from lorahpo.predict import InferRequest, run_inference

    report = run_inference(InferRequest.from_config(cfg))
    print(f"{report['rows']} rows, {report['rows_per_s']:.1f} rows/s -> {report['output']}")
    if report["groups"]:
        print(report["groups"])
    if "log_loss" in report:
        print(
            f"log loss {report['log_loss']:.4f} ({report['postprocess']}; raw "
            f"{report['raw_log_loss']:.4f}), accuracy {report['accuracy']:.4f}"
        )


if __name__ == "__main__":
    main()
