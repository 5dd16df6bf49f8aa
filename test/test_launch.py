"""The launch files and the RViz config.

Two kinds of tests:
- static checks that need no `launch` install (they run everywhere), on the
  source's launch files and on the same files as `colcon build` installs
  them: they parse, declare the documented arguments, name only executables
  that the package installs and together every node executable, wire the
  nodes as bringup does, and the RViz config shows topics the nodes publish;
- launch_pytest tests that start the launch files (ROS 2 Jazzy with launch,
  launch_ros and launch_pytest, and this package built and sourced): the demo
  publishes nine joints on /estimator/joints, and posesdf.launch.py starts its
  nodes on the topics its arguments name. Where `launch`, `launch_ros` or
  `launch_pytest` is not installed, they are skipped.
"""
from __future__ import annotations

import ast
import re
import runpy
import sys
import threading
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO / "launch"
LAUNCH_FILES = {"posesdf": LAUNCH_DIR / "posesdf.launch.py", "demo": LAUNCH_DIR / "demo.launch.py"}
RVIZ_CONFIG = REPO / "config" / "posesdf.rviz"
PACKAGE = "posesdf_ros"


# -- static analysis of the launch files (no `launch` needed) ----------------------------------------

def _module_constants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = <literal> assignments."""
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                pass
    return out


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _value(node: ast.AST, constants: dict[str, object]):
    """A literal, a constant or local, `LaunchConfiguration('x')` as ('$', 'x'), else None."""
    if isinstance(node, ast.Name):
        value = constants.get(node.id)
        return _value(value, constants) if isinstance(value, ast.AST) else value
    if isinstance(node, ast.Call) and _call_name(node) == "LaunchConfiguration":
        return ("$", _value(node.args[0], constants))
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


class LaunchFile:
    """What a launch file declares, read from its syntax tree."""

    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants = _module_constants(self.tree)
        # Locals of generate_launch_description (e.g. namespace = LaunchConfiguration('namespace')).
        for fn in (f for f in self.tree.body if isinstance(f, ast.FunctionDef)):
            for stmt in fn.body:
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    self.constants.setdefault(stmt.targets[0].id, stmt.value)
        self.functions = {f.name for f in self.tree.body if isinstance(f, ast.FunctionDef)}
        calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]
        self.arguments: dict[str, dict] = {}
        for call in (c for c in calls if _call_name(c) == "DeclareLaunchArgument"):
            kw = {k.arg: k.value for k in call.keywords}
            name = _value(call.args[0] if call.args else kw["name"], self.constants)
            self.arguments[name] = {
                "default": _value(kw["default_value"], self.constants) if "default_value" in kw else None,
                "default_node": kw.get("default_value"),
                "description": _value(kw["description"], self.constants) if "description" in kw else None,
                "choices": _value(kw["choices"], self.constants) if "choices" in kw else None,
            }
        self.nodes: list[dict] = []
        for call in (c for c in calls if _call_name(c) == "Node"):
            kw = {k.arg: k.value for k in call.keywords}
            remaps = []     # literal pairs only; the wiring itself is read by running the file (`launched_nodes`)
            if isinstance(kw.get("remappings"), ast.List):
                for pair in kw["remappings"].elts:
                    remaps.append(tuple(_value(e, self.constants) for e in pair.elts))
            self.nodes.append({
                "package": _value(kw["package"], self.constants),
                "executable": _value(kw["executable"], self.constants),
                "name": _value(kw["name"], self.constants) if "name" in kw else None,
                "remappings": remaps,
                "condition": kw.get("condition"),
                "namespace": _value(kw["namespace"], self.constants) if "namespace" in kw else None,
                "arguments": kw.get("arguments"),
            })

    def node(self, executable: str) -> dict:
        matches = [n for n in self.nodes if n["executable"] == executable]
        assert len(matches) == 1, f"{self.path.name}: expected one {executable} node, found {len(matches)}"
        return matches[0]

    def own_nodes(self) -> list[dict]:
        return [n for n in self.nodes if n["package"] == PACKAGE]


class _Recorded:
    """Stands in for any `launch` / `launch_ros` class: keeps what it was constructed with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stub_modules() -> dict[str, types.ModuleType]:
    """Just enough of `launch` and `launch_ros` to run generate_launch_description() here; a
    LaunchConfiguration reads as ("$", name), as `_value` reads it from the syntax tree."""
    names = ["launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch.event_handlers",
             "launch.events", "launch.launch_description_sources", "launch_ros", "launch_ros.actions",
             "launch_ros.parameter_descriptions", "launch_ros.substitutions"]
    modules = {}
    for name in names:
        module = types.ModuleType(name)
        module.__getattr__ = lambda attr: type(attr, (_Recorded,), {})
        modules[name] = module
    modules["launch.substitutions"].LaunchConfiguration = lambda name, **_: ("$", name)
    return modules


def launched_nodes(path: Path) -> dict[str, dict]:
    """Run a launch file's generate_launch_description() against stand-ins of `launch` and `launch_ros`
    (not installed here; real ROS 2 runs the launch_pytest tests below): executable -> the Node's arguments,
    with `remappings` as evaluated (targets: strings, or ("$", argument))."""
    stubs = _stub_modules()
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        description = runpy.run_path(str(path))["generate_launch_description"]()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    entities = description.args[0]
    return {e.kwargs["executable"]: e.kwargs for e in entities
            if type(e).__name__ == "Node" and e.kwargs.get("package") == PACKAGE}


class LaunchFiles(dict):
    """{key: LaunchFile} of one folder, and the executables installed beside them."""

    def __init__(self, folder: Path, executables: set[str]):
        super().__init__({key: LaunchFile(folder / path.name) for key, path in LAUNCH_FILES.items()})
        self.executables = executables


#: Installed executables that are not nodes: the `posesdf` command and the in-process `bringup`.
NOT_NODES = {"posesdf", "bringup"}


@pytest.fixture(scope="module", params=["source", "installed"])
def launch_files(request) -> LaunchFiles:
    """The launch files of the source tree (with setup.py's console scripts), and the same files exactly
    as `colcon build` installs them (with the executables in install/posesdf_ros/lib/posesdf_ros)."""
    if request.param == "source":
        return LaunchFiles(LAUNCH_DIR, console_scripts())
    install = request.getfixturevalue("colcon_install")
    return LaunchFiles(install.share / "launch", {p.name for p in install.lib.iterdir() if p.is_file()})


def console_scripts() -> set[str]:
    """The console_scripts names in setup.py's entry_points."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == "setup"):
        for kw in call.keywords:
            if kw.arg == "entry_points":
                scripts = ast.literal_eval(kw.value)["console_scripts"]
                return {s.split("=")[0].strip() for s in scripts}
    raise AssertionError("setup.py has no entry_points")


def published_topics() -> set[str]:
    """Absolute topics the package's nodes publish (their `~/...` lifecycle publishers, as named nodes)."""
    from posesdf_ros.ros.bringup import NODE_CLASSES

    topics = set()
    for name, (module, _cls) in NODE_CLASSES.items():
        source = (REPO / Path(*module.split("."))).with_suffix(".py").read_text()
        for private in re.findall(r'create_lifecycle_publisher\(\s*\w+,\s*"~/([\w/]+)"', source):
            topics.add(f"/{name}/{private}")
    return topics


@pytest.mark.parametrize("key", sorted(LAUNCH_FILES))
def test_launch_file_defines_generate_launch_description(launch_files, key):
    assert "generate_launch_description" in launch_files[key].functions


@pytest.mark.parametrize("key", sorted(LAUNCH_FILES))
def test_launch_file_names_only_installed_executables(launch_files, key):
    scripts = launch_files.executables
    own = launch_files[key].own_nodes()
    assert own, f"{key}: no {PACKAGE} nodes"
    for node in own:
        assert node["executable"] in scripts, f"{key}: executable {node['executable']!r} not in console_scripts"
        # The launch name is the node's own name, so parameters-file sections and topics (~/...) match.
        assert node["name"] == node["executable"]
    others = {n["package"] for n in launch_files[key].nodes} - {PACKAGE}
    assert others <= {"rviz2"}


def test_launch_files_name_every_installed_node(launch_files):
    """posesdf.launch.py and demo.launch.py together start every node executable the package installs."""
    named = {n["executable"] for lf in launch_files.values() for n in lf.own_nodes()}
    assert named == launch_files.executables - NOT_NODES
    assert NOT_NODES <= launch_files.executables


@pytest.mark.parametrize("key", sorted(LAUNCH_FILES))
def test_every_argument_has_a_description(launch_files, key):
    for name, arg in launch_files[key].arguments.items():
        assert isinstance(arg["description"], str) and arg["description"].strip(), f"{key}: {name}"


def test_posesdf_launch_arguments(launch_files):
    args = launch_files["posesdf"].arguments
    expected_defaults = {
        "points_topic": "/camera/camera/depth/color/points",
        "image_topic": "/camera/camera/color/image_raw",
        "camera_info_topic": "/camera/camera/color/camera_info",
        "backend": "posesdf", "profile": "realtime", "device": "cpu",
        "use_sim_time": "false", "rviz": "false", "namespace": "",
    }
    assert set(args) == set(expected_defaults) | {"params_file", "fastdds_profile"}
    for name, default in expected_defaults.items():
        assert args[name]["default"] == default, name
    # The profiles offered are the estimator node's.
    from posesdf_ros.parameters import ESTIMATOR_PARAMETERS

    profile = next(p for p in ESTIMATOR_PARAMETERS if p.name == "profile")
    assert list(args["profile"]["choices"]) == list(profile.choices) and profile.default == "realtime"
    _assert_params_file_default(args["params_file"]["default_node"])


def test_demo_launch_arguments(launch_files):
    from posesdf_ros.data.gait import CONDITIONS
    from posesdf_ros.data.scene import VIEWS

    args = launch_files["demo"].arguments
    assert set(args) == {"view", "condition", "profile", "device", "params_file", "rviz", "fastdds_profile"}
    assert args["rviz"]["default"] == "true"
    assert args["view"]["default"] == "V1" and args["condition"]["default"] == "normal"
    # The choices offered are exactly what the synthetic camera accepts.
    assert list(args["view"]["choices"]) == list(VIEWS)
    assert list(args["condition"]["choices"]) == list(CONDITIONS)
    _assert_params_file_default(args["params_file"]["default_node"])


def test_launch_files_set_the_shipped_fastdds_profile_before_their_nodes():
    """Every launch file exports config/fastdds.xml (its `fastdds_profile` argument) for the processes it
    starts, as its first action after the arguments, under the name posesdf_ros.ros.transport reads."""
    from posesdf_ros.ros.transport import PROFILE_ENV

    for path in LAUNCH_DIR.glob("*.launch.py"):
        lf = LaunchFile(path)
        assert lf.constants.get("PROFILE_ENV") == PROFILE_ENV, path.name
        default = lf.arguments["fastdds_profile"]["default_node"]
        assert [ast.literal_eval(p) for p in default.args[0].elts[1:]] == ["config", "fastdds.xml"], path.name
        ret = next(n for n in ast.walk(lf.tree) if isinstance(n, ast.Return))
        first = ret.value.args[0].right.elts[0]     # LaunchDescription(arguments + [first, ...])
        assert _call_name(first) == "SetEnvironmentVariable", path.name
        assert _value(first.args[1], {}) == ("$", "fastdds_profile"), path.name
    assert (REPO / "config" / "fastdds.xml").is_file()


def _assert_params_file_default(node: ast.AST):
    """PathJoinSubstitution([FindPackageShare('posesdf_ros'), 'config', 'posesdf.yaml'])."""
    assert isinstance(node, ast.Call) and _call_name(node) == "PathJoinSubstitution"
    parts = node.args[0].elts
    assert isinstance(parts[0], (ast.Name, ast.Call))
    assert isinstance(parts[0], ast.Name) or _call_name(parts[0]) == "FindPackageShare"
    assert [ast.literal_eval(p) for p in parts[1:]] == ["config", "posesdf.yaml"]


def test_posesdf_launch_wiring_matches_bringup(launch_files):
    """PIPELINE_REMAPS, relative so they follow `namespace`; the camera topics come from the arguments."""
    from posesdf_ros.ros.bringup import PIPELINE_REMAPS

    lf = launch_files["posesdf"]
    nodes = launched_nodes(lf.path)
    for name in ("canonicaliser", "estimator", "pose_prior"):
        assert lf.node(name)["namespace"] == ("$", "namespace")
        remaps = dict(nodes[name].get("remappings", []))
        for src, dst in PIPELINE_REMAPS.get(name, {}).items():
            assert src in remaps, f"{name}: {src} not remapped"
            # Same topic as bringup's absolute name in the root namespace; relative here.
            assert remaps[src] == dst.lstrip("/"), f"{name}: {src}:={remaps[src]}"
    assert dict(nodes["canonicaliser"]["remappings"]) == {"points": ("$", "points_topic")}
    estimator = dict(nodes["estimator"]["remappings"])
    assert estimator["image"] == ("$", "image_topic") and estimator["camera_info"] == ("$", "camera_info_topic")


def test_demo_launch_wiring_matches_bringup(launch_files):
    """The demo wires the four nodes exactly as `bringup` does in one process."""
    from posesdf_ros.ros.bringup import NODE_CLASSES, remaps_for

    nodes = launched_nodes(launch_files["demo"].path)
    names = list(NODE_CLASSES)
    assert sorted(nodes) == sorted(names)
    for name in names:
        assert dict(nodes[name].get("remappings", [])) == remaps_for(name, names), name


def test_launch_files_take_the_wiring_from_the_package(launch_files):
    """One definition of the wiring: the launch files import it from posesdf_ros.ros.bringup and spell no
    pipeline topic themselves."""
    from posesdf_ros.ros.bringup import PIPELINE_REMAPS, SYNTHETIC_CAMERA_REMAPS

    for key in ("posesdf", "demo"):
        lf = launch_files[key]
        imports = {n.module for n in ast.walk(lf.tree) if isinstance(n, ast.ImportFrom)}
        assert "posesdf_ros.ros.bringup" in imports, f"{key}: the wiring is not imported from posesdf_ros.ros.bringup"
        text = lf.path.read_text()
        for remaps in (*PIPELINE_REMAPS.values(), *SYNTHETIC_CAMERA_REMAPS.values()):
            for dst in remaps.values():
                assert f"'{dst}'" not in text and f"'{dst.lstrip('/')}'" not in text, (key, dst)


@pytest.mark.parametrize("key", sorted(LAUNCH_FILES))
def test_rviz_node_is_conditional_and_uses_the_package_config(launch_files, key):
    rviz = launch_files[key].node("rviz2")
    condition = rviz["condition"]
    assert isinstance(condition, ast.Call) and _call_name(condition) == "IfCondition"
    assert _value(condition.args[0], {}) == ("$", "rviz")
    args = rviz["arguments"].elts
    assert ast.literal_eval(args[0]) == "-d"
    path = args[1]
    assert _call_name(path) == "PathJoinSubstitution"
    assert [ast.literal_eval(p) for p in path.args[0].elts[1:]] == ["config", RVIZ_CONFIG.name]


# -- the RViz config ------------------------------------------------------------------------------------

def _load_rviz() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(RVIZ_CONFIG.read_text())


def _displays(displays: list[dict]):
    for display in displays:
        yield display
        yield from _displays(display.get("Displays", []))  # rviz_common/Group


def test_rviz_config_structure():
    config = _load_rviz()
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    assert manager["Views"]["Current"]["Class"].startswith("rviz_default_plugins/")
    classes = {d["Class"] for d in _displays(manager["Displays"])}
    assert {"rviz_default_plugins/Grid", "rviz_default_plugins/PointCloud2", "rviz_default_plugins/MarkerArray",
            "rviz_default_plugins/Image"} <= classes
    for display in _displays(manager["Displays"]):
        assert display["Class"].startswith(("rviz_default_plugins/", "rviz_common/")), display["Class"]
        assert display["Enabled"] == display["Value"], display["Name"]


def test_rviz_config_shows_what_the_nodes_publish():
    config = _load_rviz()
    published = published_topics()
    assert {"/canonicaliser/legs", "/estimator/markers", "/estimator/overlay", "/synthetic_camera/points"} <= published
    by_topic = {d["Topic"]["Value"]: d for d in _displays(config["Visualization Manager"]["Displays"]) if "Topic" in d}
    assert set(by_topic) <= published, set(by_topic) - published
    assert by_topic["/canonicaliser/legs"]["Class"] == "rviz_default_plugins/PointCloud2"
    assert by_topic["/canonicaliser/legs"]["Enabled"] is True
    assert by_topic["/estimator/markers"]["Class"] == "rviz_default_plugins/MarkerArray"
    assert set(by_topic["/estimator/markers"]["Namespaces"]) == {"joints", "bones", "mesh"}
    assert by_topic["/estimator/overlay"]["Class"] == "rviz_default_plugins/Image"
    # The camera cloud is in the optical frame: it needs TF to base_link, so it starts disabled.
    assert by_topic["/synthetic_camera/points"]["Enabled"] is False


# -- packaging ------------------------------------------------------------------------------------------

def test_setup_installs_launch_and_rviz_files():
    setup = (REPO / "setup.py").read_text()
    assert 'f"share/{PACKAGE}/launch", glob("launch/*.launch.py")' in setup
    assert 'glob("config/*.rviz")' in setup and 'glob("config/*.yaml")' in setup and 'glob("config/*.xml")' in setup
    assert set(LAUNCH_FILES.values()) <= set(LAUNCH_DIR.glob("*.launch.py"))
    assert RVIZ_CONFIG in set((REPO / "config").glob("*.rviz"))


# -- launch_pytest: start the launch files (ROS 2 Jazzy with launch, launch_ros, launch_pytest) ---------

def _optional(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


launch = _optional("launch")
launch_ros = _optional("launch_ros")
launch_pytest = _optional("launch_pytest")
if launch_pytest is not None:
    import launch_pytest.actions  # noqa: F401  (ReadyToTest)

JOINTS_TIMEOUT_S = 180.0  # the synthetic camera renders a gait cycle on configure, the models load on CPU
GRAPH_TIMEOUT_S = 90.0


def _package_installed() -> bool:
    try:
        from ament_index_python.packages import get_package_share_directory

        get_package_share_directory(PACKAGE)
        return True
    except (ImportError, LookupError):
        return False


if launch is None or launch_ros is None or launch_pytest is None:
    @pytest.mark.skip(reason="launch, launch_ros and launch_pytest are not installed (needs a ROS 2 Jazzy install)")
    def test_launch_files_start():
        pass
else:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    needs_install = pytest.mark.skipif(not _package_installed(),
                                       reason=f"{PACKAGE} is not installed "
                                              "(colcon build and source install/setup.bash)")

    def _include(key: str, **arguments: str):
        return IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILES[key])),
                                        launch_arguments=list(arguments.items()))

    @launch_pytest.fixture
    def demo_launch():
        return launch.LaunchDescription([_include("demo", rviz="false"), launch_pytest.actions.ReadyToTest()])

    @launch_pytest.fixture
    def camera_launch():
        return launch.LaunchDescription([
            _include("posesdf", points_topic="/test_camera/points", image_topic="/test_camera/image",
                     camera_info_topic="/test_camera/camera_info", namespace="posesdf_test", rviz="false"),
            launch_pytest.actions.ReadyToTest(),
        ])

    class _Probe:
        """A plain rclpy node in its own context, spun by the test's thread."""

        def __init__(self, name: str):
            import rclpy
            from rclpy.executors import SingleThreadedExecutor

            self.rclpy = rclpy
            self.context = rclpy.Context()
            rclpy.init(context=self.context)
            self.node = rclpy.create_node(name, context=self.context)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.node)

        def spin_until(self, predicate, timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if predicate():
                    return True
                self.executor.spin_once(timeout_sec=0.2)
            return predicate()

        def close(self):
            self.executor.shutdown()
            self.node.destroy_node()
            self.rclpy.shutdown(context=self.context)

    @needs_install
    @pytest.mark.launch(fixture=demo_launch)
    def test_demo_publishes_nine_joints():
        from geometry_msgs.msg import PoseArray

        probe = _Probe("test_demo_joints")
        received: list = []
        done = threading.Event()

        def on_joints(msg):
            received.append(msg)
            if len(msg.poses) == 9:
                done.set()

        try:
            probe.node.create_subscription(PoseArray, "/estimator/joints", on_joints, 10)
            assert probe.spin_until(done.is_set, JOINTS_TIMEOUT_S), \
                f"no /estimator/joints with 9 poses within {JOINTS_TIMEOUT_S} s ({len(received)} messages)"
            msg = next(m for m in received if len(m.poses) == 9)
            assert msg.header.frame_id == "base_link"
        finally:
            probe.close()

    @needs_install
    @pytest.mark.launch(fixture=camera_launch)
    def test_posesdf_launch_starts_on_the_given_topics():
        probe = _Probe("test_posesdf_graph")
        graph = probe.node

        def wired() -> bool:
            names = set(graph.get_node_names_and_namespaces())
            return ({("canonicaliser", "/posesdf_test"), ("estimator", "/posesdf_test")} <= names
                    and graph.count_subscribers("/test_camera/points") >= 1
                    and graph.count_subscribers("/test_camera/image") >= 1
                    and graph.count_subscribers("/test_camera/camera_info") >= 1
                    # the estimator listens where the canonicaliser (configured) publishes, in the namespace
                    and graph.count_subscribers("/posesdf_test/canonicaliser/legs") >= 1
                    and graph.count_publishers("/posesdf_test/canonicaliser/legs") >= 1
                    and graph.count_subscribers("/posesdf_test/canonicaliser/person") >= 1)

        try:
            assert probe.spin_until(wired, GRAPH_TIMEOUT_S), (
                f"graph after {GRAPH_TIMEOUT_S} s: nodes {graph.get_node_names_and_namespaces()}, "
                f"topics {graph.get_topic_names_and_types()}")
        finally:
            probe.close()
