"""CLI contract: params overrides, unknown keys, exit codes, and the library/orchestration boundary."""

import subprocess
import sys

import pytest

from flows.cli import main

from .conftest import ROOT


@pytest.mark.parametrize("override,message", [
    ("stocks.train.epocs=2", "unknown key stocks.train.epocs; allowed: epochs, batch_size"),
    ("stocks.model.hiden_size=8", "unknown key stocks.model.hiden_size"),
    ("stocks.train.epochs=two", "stocks.train.epochs must be an integer, got 'two'."),
    ("stocks.data.missing=sometimes", "stocks.data.missing must be one of fail, drop, ffill, got 'sometimes'."),
    ("sentiment.window.lookback=5", "unknown key sentiment.window.lookback; allowed: vocab_size, max_tokens"),
    ("stocks.window.vocab_size=10", "unknown key stocks.window.vocab_size; allowed: lookback, horizon"),
    ("panel.evaluate.top_k=0", "panel.evaluate.top_k must be >= 1, got 0."),
    ("stocks.window.test_start=someday", "stocks.window.test_start must be an ISO date such as 2016-01-04"),
    ("stocks.model.cell=transformer", "stocks.model.cell must be one of rnn, gru, lstm, rmc, got 'transformer'."),
    ("stock.train.epochs=2", "unknown top-level key 'stock' in params"),
    ("stocks.train.epochs", "must look like key.path=value"),
])
def test_bad_overrides_name_the_key(project, capsys, override, message):
    assert main(["ingest", "stocks", "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_yaml_values_and_set_file(project, capsys):
    (project / "best.yaml").write_text("stocks.window.lookback: 12\n")
    from r2n2.registry import load_params

    p = load_params("params.yaml", ['stocks.data.na_values=[".", "NA"]', "stocks.data.entity=null"])
    assert p.case("stocks").data.na_values == [".", "NA"] and p.case("stocks").data.entity is None
    from flows.cli import _file_overrides

    assert _file_overrides([str(project / "best.yaml")]) == ["stocks.window.lookback=12"]


def test_missing_params_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "stocks"]) == 2
    assert "params file params.yaml does not exist" in capsys.readouterr().err


def test_yaml12_numbers(project):
    from r2n2.registry import load_params

    p = load_params("params.yaml", ["stocks.train.lr=1e-3", "stocks.train.weight_decay=5E-4"])
    assert p.case("stocks").train.lr == 0.001 and p.case("stocks").train.weight_decay == 0.0005


def test_each_case_lists_only_its_own_keys():
    """params.yaml: a case's block holds exactly that case's config sections and fields."""
    import dataclasses

    import yaml

    from r2n2.registry import REGISTRY

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, case in REGISTRY.items():
        fields = {f.name: f for f in dataclasses.fields(case.config_cls)}
        assert set(raw[name]) == set(fields), name
        for section, values in raw[name].items():
            sub = {f.name for f in dataclasses.fields(typing_hint(case.config_cls, section))}
            assert set(values) <= sub, (name, section, set(values) - sub)


def typing_hint(cls, name):
    import typing

    return typing.get_type_hints(cls)[name]


def test_library_never_imports_prefect():
    code = ("import sys, r2n2, r2n2.stages, r2n2.cases, r2n2.ops.monitoring, r2n2.ops.champion, r2n2.ops.replay, "
            "r2n2.tune; "
            "print('prefect' in sys.modules or any(m.startswith('flows') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_data_stages_start_without_torch(tmp_path):
    """ingest, validate and window of every case load neither torch nor the models (1.3 s of each of their 12
    commands in `make run`); a training stage does."""
    code = ("import sys, flows.cli, r2n2.registry, r2n2.stages, r2n2.models, r2n2.data; "
            "from r2n2.models.config import ModelConfig; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = "import sys, r2n2.models; r2n2.models.EnhancedR2N2(3, 4, 1); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_headline_is_one_readable_table_per_case():
    """Whole column names, the model's verdict against each row (its first test, with p), the main baseline
    starred, the test period with its length; texts without dates say so."""
    from r2n2.evaluate.report import headline

    m = {"test_period": {"start": "2016-01-04", "end": "2018-12-28", "n": 724},
         "model": {"rmse": 0.0107, "rel_rmse_random_walk": 0.998, "oos_r2": 0.003, "directional_accuracy": 0.535,
                   "n": 724},
         "baselines": {"random_walk": {"rmse": 0.0108, "rel_rmse_random_walk": 1.0},
                       "no_relational": {"rmse": 0.0109, "rel_rmse_random_walk": 1.009, "oos_r2": -0.018}},
         "comparisons": [{"a": "model", "b": "random_walk", "test": "diebold_mariano", "p_value": 0.78,
                          "verdict": "tie"},
                         {"a": "model", "b": "random_walk", "test": "clark_west", "p_value": 0.01, "verdict": "better"},
                         {"a": "model", "b": "no_relational", "test": "diebold_mariano", "p_value": 0.046,
                          "verdict": "better"}]}
    text = headline("stocks", m, ("rmse", "rel_rmse_random_walk", "oos_r2", "directional_accuracy"),
                    main="random_walk")
    lines = text.splitlines()
    assert lines[0] == "stocks: test period 2016-01-04 .. 2018-12-28 (724 days)"
    assert lines[1].split() == ["rmse", "rel_rmse_random_walk", "oos_r2", "directional_accuracy", "model", "vs",
                                "this", "row"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["model", "random_walk", "no_relational"]
    assert lines[3].startswith("random_walk *") and lines[3].endswith("tie (p 0.78, diebold_mariano)")
    assert lines[4].endswith("better (p 0.046, diebold_mariano)") and lines[4].split()[4] == "-"
    assert lines[-1] == "* random_walk: the case's main baseline"
    assert max(map(len, lines)) <= 130 and "0.998" in lines[2]
    texts = headline("sentiment", {"test_period": {"start": 32434, "end": 38157, "n": 4619},
                                   "model": {"macro_f1": 0.74}}, ("macro_f1",))
    assert texts.splitlines()[0] == ("sentiment: test: texts 32,434 .. 38,157 in arrival order (4,619 texts; the "
                                     "data has no dates)")


def _undocumented(parser, prefix: str = "r2n2") -> list[str]:
    import argparse

    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{prefix} {name}")
                missing += _undocumented(sub, f"{prefix} {name}")
        elif action.dest != "help" and not action.help:
            missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_subcommand_and_flag_has_a_help_line():
    from flows.cli import _parser

    assert _undocumented(_parser()) == []
