"""``normlab train`` and ``normlab study`` on a root parser of their own: frames out, one-line errors."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import torch
from helpers import run_train_cli as run
from helpers import train_parser as parser

from normlab.cli.train import study_config_from_args

TINY = ["--arch", "cnn", "--depth", "2", "--width", "8", "--norm", "batchnorm"]
TINY_TRAIN = ["--steps", "8", "--batch-size", "16", "--image-size", "8", "--eval-every", "4",
              "--probe-after", "2"]
TINY_STUDY = ["--archs", "cnn", "--norms", "batchnorm", "layernorm", "--seeds", "2", "--width", "8",
              "--cnn-depth", "2", "--k-steps", "8", "--n-boot", "50", "--steps", "8", "--batch-size", "16",
              "--image-size", "8", "--eval-every", "4", "--probe-after", "2"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The commands set torch's thread count (--threads); give the next test back what it had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)



def test_both_subcommands_register_a_handler_under_func_and_run():
    for name in ("train", "study"):
        args = parser().parse_args([name])
        assert callable(args.func) and args.run is args.func


def test_train_writes_the_curve_as_csv_and_the_summary_to_stderr(capsys):
    code, out, err = run(["train", *TINY, *TINY_TRAIN], capsys)
    assert code == 0
    curve = pd.read_csv(io.StringIO(out))
    assert curve["step"].tolist() == list(range(9))
    assert curve["test_acc"].notna().sum() == 3  # steps 0, 4, 8
    assert (curve["norm"] == "batchnorm").all() and (curve["width"] == 8).all()
    assert "held-out accuracy" in err and "train 8/8" in err
    assert "gradient range" in err and "gradient growth" in err


def test_train_summary_as_json_is_one_strict_record(capsys):
    code, out, _ = run(["train", *TINY, *TINY_TRAIN, "--show", "summary", "--format", "json"], capsys)
    assert code == 0
    records = json.loads(out)
    assert len(records) == 1
    record = records[0]
    assert record["diverged"] is False and record["steps_done"] == 8 and record["groups"] is None
    assert 0 <= record["final_test_acc"] <= 1 and record["lr"] == 0.02


def test_train_probes_hold_the_init_and_after_rows(capsys):
    code, out, _ = run(["train", *TINY, *TINY_TRAIN, "--show", "probes"], capsys)
    probes = pd.read_csv(io.StringIO(out))
    assert code == 0 and set(probes["step"]) == {0, 1, 2, 5, 8}  # the default probe steps and probe_after
    assert {"act", "conv", "spectrum"} <= set(probes["kind"])


def test_train_table_shows_the_evaluated_steps_and_writes_to_out(tmp_path, capsys):
    target = tmp_path / "curve.txt"
    code, out, _ = run(["train", *TINY, *TINY_TRAIN, "--format", "table", "--out", str(target)], capsys)
    assert code == 0 and out == ""
    lines = target.read_text().splitlines()
    assert lines[0].split() == ["step", "loss", "train_acc", "test_loss", "test_acc"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "4", "8"]


def test_a_diverging_run_exits_0_and_says_diverged(capsys):
    code, out, err = run(["train", "--arch", "cnn", "--depth", "2", "--width", "8", "--norm", "none",
                          "--lr", "1e6", *TINY_TRAIN[:2], "--batch-size", "16", "--image-size", "8",
                          "--probe-after", "2", "--show", "summary"], capsys)
    assert code == 0 and "DIVERGED" in err
    assert pd.read_csv(io.StringIO(out))["diverged"].item()


@pytest.mark.parametrize(("argv", "field"), [
    (["train", "--lr", "-1"], "lr"),
    (["train", "--steps", "5", "--probe-after", "9"], "probe_after"),
    (["train", "--norm", "groupnorm", "--groups", "3", "--arch", "cnn", "--width", "8"], "groups"),
    (["train", "--norm", "rmsnorm"], "norm"),
    (["study", "--norms", "batchnorm", "rmsnorm"], "norms"),
    (["study", "--k-steps", "900"], "k_steps"),
    (["study", "--archs", "cnn", "--groups", "5"], "groups"),
    (["train", "--seed", "18446744073709551616"], "seed must be between 0 and 2**62"),
    (["train", "--threads", "1099511627776"], "threads must be between 1 and 1024"),
    (["train", "--steps", "1000000000"], "steps must be between 1 and 100,000"),
    (["study", "--seeds", "1000000000"], "seeds must be between 1 and 1,000"),
    (["study", "--n-boot", "10000000000"], "n_boot must be between 1 and 1,000,000"),
])
def test_bad_values_exit_2_with_one_line_naming_the_field(argv, field, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and field in err


def test_threads_sets_torch_threads_and_refuses_zero(capsys):
    code, _, _ = run(["train", *TINY, *TINY_TRAIN, "--threads", "2", "--show", "summary"], capsys)
    assert code == 0 and torch.get_num_threads() == 2
    code, _, err = run(["train", *TINY, "--threads", "0"], capsys)
    assert code == 2 and "threads" in err


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys):
    code, _, err = run(["train", *TINY, "--out", str(tmp_path / "missing" / "x.csv")], capsys)
    assert code == 2 and "does not exist" in err and "train " not in err


def test_study_flags_build_the_study_config_training_flags_included():
    args = parser().parse_args(["study", *TINY_STUDY, "--lr", "0.05"])
    config = study_config_from_args(args)
    assert config.archs == ("cnn",) and config.norms == ("batchnorm", "layernorm") and config.seeds == 2
    assert config.train.lr == 0.05 and config.train.steps == 8 and config.k_steps == 8
    defaults = study_config_from_args(parser().parse_args(["study"]))
    assert defaults.archs == ("cnn", "resnet")


def test_study_writes_one_row_per_run_and_the_correlations_to_stderr(capsys):
    code, out, err = run(["study", *TINY_STUDY], capsys)
    assert code == 0
    runs = pd.read_csv(io.StringIO(out))
    assert len(runs) == 4 and set(runs["norm"]) == {"batchnorm", "layernorm"}
    assert {"cos_sim_init", "acc_at_k", "steps_to_target"} <= set(runs.columns)
    assert "Spearman rho" in err and "study 4/4 runs" in err


def test_study_correlations_as_json(capsys):
    code, out, _ = run(["study", *TINY_STUDY, "--show", "correlations", "--format", "json"], capsys)
    table = json.loads(out)
    assert code == 0 and [r["speed"] for r in table] == ["acc_at_k", "steps_to_target"]
    assert all(r["arch"] == "cnn" and r["n"] == 4 for r in table)


# --- probes at chosen steps, CIFAR from --data-dir, --recipe paper ------------------------------------


def test_probe_steps_take_a_comma_separated_list_and_the_probes_frame_holds_every_step(capsys):
    code, out, err = run(["train", *TINY, *TINY_TRAIN, "--probe-steps", "0,1,5", "--show", "probes"], capsys)
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert sorted(frame["step"].unique()) == [0, 1, 2, 5]  # --probe-after 2 still probes
    assert "grad_norm range by step: 0: " in err and ", 5: " in err


def test_probe_steps_that_are_not_numbers_or_past_the_end_exit_2_naming_them(capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's own exit for a malformed value
        run(["train", *TINY, *TINY_TRAIN, "--probe-steps", "0,x"], capsys)
    assert stop.value.code == 2 and "probe steps must be whole numbers" in capsys.readouterr().err
    code, _, err = run(["train", *TINY, *TINY_TRAIN, "--probe-steps", "0,99"], capsys)
    assert code == 2 and "probe_steps must be between 0 and 8; got 99" in err


def test_recipe_paper_trains_on_cifar_from_data_dir_with_a_head_for_its_classes(tmp_path, capsys):
    from tests.cifar_files import write_cifar

    write_cifar(tmp_path, "cifar100", "python", per_file=16)
    code, out, err = run(["train", *TINY, "--recipe", "paper", "--steps", "2", "--batch-size", "8",
                          "--image-size", "8", "--data-dir", str(tmp_path), "--show", "summary",
                          "--format", "json"], capsys)
    assert code == 0, err
    (summary,) = json.loads(out)
    assert summary["dataset"] == "cifar100" and summary["num_classes"] == 100
    assert (summary["momentum"], summary["weight_decay"], summary["hflip"]) == (0.9, 1e-4, True)
    assert summary["lr"] == 0.1 * 256 / 8 and summary["steps_done"] == 2


def test_a_cifar_run_without_its_files_exits_2_naming_the_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NORMLAB_DATA_DIR", raising=False)
    code, _, err = run(["train", *TINY, *TINY_TRAIN, "--dataset", "cifar10"], capsys)
    assert code == 2 and "--data-dir" in err and "NORMLAB_DATA_DIR" in err
    code, _, err = run(["train", *TINY, *TINY_TRAIN, "--dataset", "cifar10", "--data-dir", str(tmp_path)],
                       capsys)
    assert code == 2 and f"no cifar10 files in '{tmp_path}'" in err


def test_a_training_larger_than_the_machine_is_refused_by_its_memory_before_any_work(capsys, monkeypatch):
    # a 16 GiB machine's free memory
    monkeypatch.setattr("normlab.ops.settings.machine_memory_mb", lambda: 16384.0)
    monkeypatch.setattr("normlab.science.training.digits_split", lambda *a: pytest.fail("loaded data first"))
    code, out, err = run(["train", "--arch", "mlp", "--depth", "2", "--width", "65536", "--steps", "1",
                          "--probe-after", "1", "--image-size", "8"], capsys)
    assert code == 2 and out == ""
    assert "estimated peak memory" in err and "exceeds the memory this machine has free, 16,384 MiB" in err
