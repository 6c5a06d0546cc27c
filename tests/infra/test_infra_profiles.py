"""Named configurations (`-c topx:profile=profiles/<name>.json`, infra/profiles.py): the 100M profile
synthesizes with its settings in the template and zero cdk-nag findings; every profile key is a key
the app knows; `-c` keys win over the profile, the profile over cdk.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from app import CDK_JSON, build_app, default_context
from infra.config import AppConfig
from infra.profiles import PROFILE_KEY, read_profile, with_profile
from pipeline_steps.common.errors import ConfigError
from tests.infra.conftest import ROOT, Synth, all_states, render_asl, resources
from tests.infra.test_infra_nag import _findings

PROFILES = sorted((ROOT / "profiles").glob("*.json"))
PROFILE_100M = "profiles/100m.json"


@pytest.fixture(scope="module")
def synth_100m(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-profile-100m")
    app = build_app({PROFILE_KEY: PROFILE_100M}, outdir=str(outdir))
    app.synth()
    return Synth(outdir=outdir, app=app)


def _request(asl: dict[str, Any], state: str) -> dict[str, Any]:
    """The SageMaker request of one Task state (its Parameters)."""
    params: dict[str, Any] = all_states(asl)[state]["Parameters"]
    return params


def _step_config(template: dict[str, Any], step: str) -> dict[str, Any]:
    """The STEP_CONFIG of the step's Lambda(s) (publish has several handlers, one config)."""
    configs = [
        json.loads(f["Properties"]["Environment"]["Variables"]["STEP_CONFIG"])
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").startswith(f"pipeline_steps.{step}.handler")
    ]
    assert configs and all(c == configs[0] for c in configs), step
    return configs[0]


def test_100m_profile_sets_the_jobs_in_the_state_machine(synth_100m: Synth) -> None:
    asl = render_asl(synth_100m.template("pipeline"))
    for name in ("TrainFM", "TrainFMWithoutTest"):  # with and without a test channel
        fm = _request(asl, name)
        assert fm["ResourceConfig"]["InstanceCount"] == 3
        assert fm["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
        assert fm["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200
        # topx:recipe minimal (pipeline_steps/common/recipes.py): 3 epochs at factors_lr 0.004
        hyper = fm["HyperParameters"]
        assert (hyper["epochs"], hyper["factors_lr"]) == ("3", "0.004")
    transform = _request(asl, "Transform")["TransformResources"]
    assert (transform["InstanceType"], transform["InstanceCount"]) == ("ml.m5.xlarge", 12)
    cluster = _request(asl, "PrepareSpark")["ProcessingResources"]["ClusterConfig"]
    assert (cluster["InstanceType"], cluster["InstanceCount"]) == ("ml.m5.4xlarge", 2)
    assert asl["TimeoutSeconds"] == 16 * 3600


def test_100m_profile_sets_the_lambdas_and_the_step_configs(synth_100m: Synth) -> None:
    template = synth_100m.template("pipeline")
    assertions = Template.from_json(template)
    for step in ("prepare", "repackage", "evaluate", "publish", "report"):
        assertions.has_resource_properties(
            "AWS::Lambda::Function",
            {"Handler": Match.string_like_regexp(rf"^pipeline_steps\.{step}\.handler"), "MemorySize": 10240},
        )
    prepare = _step_config(template, "prepare")
    assert {
        k: prepare[k] for k in ("engine", "negative_draws", "negative_ratio", "min_shards", "recipe")
    } == {
        "engine": "spark",
        "negative_draws": 1,
        "negative_ratio": 1,
        "min_shards": 3,  # one train shard (at least) per FM instance
        "recipe": "minimal",
    }
    assert _step_config(template, "repackage")["transform_instance_count"] == 12
    assert _step_config(template, "evaluate")["max_users"] == 100_000
    assert _step_config(template, "publish")["users_per_child"] == 100_000


def test_100m_profile_has_zero_cdk_nag_findings(synth_100m: Synth) -> None:
    plugins = [p.name for p in synth_100m.app.policy_validation_beta1]
    assert plugins == ["AwsSolutions"]
    assert _findings(synth_100m.validation_report()) == []


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_key_is_known_and_builds(path: Path) -> None:
    defaults = default_context()
    assert read_profile(path, defaults)  # every head is a cdk.json key
    context = with_profile({**defaults, PROFILE_KEY: str(path.relative_to(ROOT))}, defaults, root=ROOT)
    AppConfig.from_context(context)  # every field after the dot is one of its section's


def test_the_100m_profile_is_documented_key_by_key() -> None:
    """docs/scale.md's profile section names each key of the profile (the justification of its value)."""
    text = (ROOT / "docs" / "scale.md").read_text()
    section = text[text.index("## 4. The 100M profile") :]
    for key in json.loads((ROOT / PROFILE_100M).read_text()):
        assert f"`{key}`" in section, key


def _profile(tmp_path: Path, data: Any) -> str:
    path = tmp_path / "profile.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"topx:lamda.memory_mb": 10240}, "'topx:lamda' is not a key of cdk.json's context"),
        ({"topx:fm.instance_cout": 3}, r"topx:fm: unknown key\(s\) \['instance_cout'\]"),
        ({"topx:publish.users_per_chld": 5}, r"unknown key\(s\) \['users_per_chld'\]"),
        ({"topx:fm.hyperparameters.epoch": "3"}, r"unknown SageMaker hyperparameter\(s\) \['epoch'\]"),
        ({"fm.instance_count": 3}, "expected a 'topx:' context key"),
        ({PROFILE_KEY: "other.json"}, "expected a 'topx:' context key other than"),
        ({}, "non-empty JSON object"),
        ("{not json", "is not JSON"),
    ],
)
def test_a_typo_in_a_profile_fails_naming_the_key(tmp_path: Path, data: Any, message: str) -> None:
    defaults = default_context()
    path = _profile(tmp_path, data)
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_context(with_profile({**defaults, PROFILE_KEY: path}, defaults, root=ROOT))


def test_a_missing_profile_names_the_path(tmp_path: Path) -> None:
    defaults = default_context()
    with pytest.raises(ConfigError, match=re.escape(f"{PROFILE_KEY}: cannot read {tmp_path / 'none.json'}")):
        with_profile({**defaults, PROFILE_KEY: "none.json"}, defaults, root=tmp_path)


def test_precedence_cdk_json_then_profile_then_c(tmp_path: Path) -> None:
    defaults = default_context()
    path = _profile(
        tmp_path, {"topx:fm.instance_count": 3, "topx:state_machine_timeout_hours": 16, "topx:x": 20}
    )
    given = {
        **defaults,
        PROFILE_KEY: path,
        "topx:fm.instance_count": "5",  # a dotted -c key (never in cdk.json) wins
        "topx:x": "15",  # a -c value other than cdk.json's wins
    }
    config = AppConfig.from_context(with_profile(given, defaults, root=ROOT))
    assert config.fm.instance_count == 5
    assert config.steps.publish.x == 15
    assert config.state_machine_timeout_hours == 16  # the profile over cdk.json's 12
    assert config.transform.instance_count == 1  # cdk.json's, untouched by the profile


def test_without_a_profile_the_context_is_unchanged() -> None:
    defaults = default_context()
    assert with_profile(defaults, defaults, root=CDK_JSON.parent) == defaults


@pytest.mark.parametrize("key", ["topx:recipee", "topx:lamda.memory_mb"])
def test_a_misspelt_c_key_fails_the_synth_naming_it(key: str) -> None:
    """Without a profile too: a `-c topx:` key the app does not know is an error, not ignored."""
    with pytest.raises(ConfigError, match=re.escape(f"-c: key {key!r}: '{key.split('.')[0]}' is not a key")):
        build_app({key: "minimal"})
