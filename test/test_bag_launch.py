"""launch/bag_replay.launch.py: static checks everywhere, construction where `launch` and `launch_ros` exist."""
from __future__ import annotations

import ast
import importlib.util

import pytest
from test_launch import LAUNCH_DIR, LaunchFile, _call_name, _value

from posesdf_ros.ros.bag import layout
from posesdf_ros.ros.bag.live import RECORDED

PATH = LAUNCH_DIR / "bag_replay.launch.py"


@pytest.fixture(scope="module")
def replay() -> LaunchFile:
    return LaunchFile(PATH)


def _calls(lf: LaunchFile, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(lf.tree) if isinstance(n, ast.Call) and _call_name(n) == name]


def test_arguments_are_described_and_default_to_the_recorded_layout(replay):
    assert "generate_launch_description" in replay.functions
    assert all(a["description"] for a in replay.arguments.values()), replay.arguments
    assert replay.arguments["bag"]["default_node"] is None            # required: nothing to replay otherwise
    defaults = {k: a["default"] for k, a in replay.arguments.items()}
    assert (defaults["points_topic"], defaults["image_topic"], defaults["camera_info_topic"]) == \
        (layout.POINTS_TOPIC, layout.IMAGE_TOPIC, layout.CAMERA_INFO_TOPIC)
    assert replay.arguments["profile"]["choices"] == ["realtime", "fast", "accurate"]
    assert defaults["profile"] == "realtime"


def test_plays_with_clock_into_the_pipeline_on_sim_time_and_records_what_live_eval_records(replay):
    include = _calls(replay, "IncludeLaunchDescription")
    assert len(include) == 1
    source = ast.unparse(include[0])
    assert "'posesdf.launch.py'" in source and "'use_sim_time': 'true'" in source
    for arg in ("points_topic", "image_topic", "camera_info_topic", "params_file", "profile", "rviz"):
        assert f"'{arg}': LaunchConfiguration('{arg}')" in source, arg
    assert (LAUNCH_DIR / "posesdf.launch.py").exists()
    commands = [ast.unparse(kw.value) for call in _calls(replay, "ExecuteProcess") for kw in call.keywords
                if kw.arg == "cmd"]
    play = next(c for c in commands if "'play'" in c)
    assert play.startswith("['ros2', 'bag', 'play'") and "'--clock'" in play and "LaunchConfiguration('rate')" in play
    record = next(c for c in commands if "'record'" in c)
    assert "'--use-sim-time'" in record and "RECORDED_TOPICS" in record
    assert replay.constants["RECORDED_TOPICS"] == list(RECORDED)
    # The play waits for the models to load, and its end shuts the launch down.
    timer = [c for c in _calls(replay, "TimerAction") if "play" in ast.unparse(c)]
    assert any(_value(kw.value, {}) == ("$", "start_delay") for c in timer for kw in c.keywords if kw.arg == "period")
    assert _calls(replay, "OnProcessExit") and _calls(replay, "Shutdown")


def test_launch_description_builds_with_the_launch_api():
    pytest.importorskip("launch.actions")
    pytest.importorskip("launch_ros")
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("bag_replay_launch", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert {"bag", "rate", "points_topic", "output_bag"} <= declared
