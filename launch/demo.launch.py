"""The whole pipeline on the synthetic camera: synthetic_camera + canonicaliser + estimator + pose_prior (+ RViz 2).

    ros2 launch posesdf_ros demo.launch.py
    ros2 launch posesdf_ros demo.launch.py view:=V3 condition:=in_toeing profile:=accurate rviz:=false

No hardware needed: the synthetic camera renders a walking person (one gait
cycle, rendered on configure, then played in a loop) and publishes what a
RealSense-like driver would, plus the ground-truth joints on
/synthetic_camera/ground_truth/joints. The wiring is bringup's
PIPELINE_REMAPS + SYNTHETIC_CAMERA_REMAPS (imported: `remaps_for`), i.e. the same as
`ros2 run posesdf_ros bringup` (all three nodes in one process).

Node, not LifecycleNode, starts the nodes: they are lifecycle nodes that
whose executables configure and activate them (`autostart`); see posesdf.launch.py.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from posesdf_ros.ros.bringup import NODE_CLASSES, remaps_for

PACKAGE = 'posesdf_ros'
#: Fast DDS 2.x (Jazzy) reads its XML profile from here; posesdf_ros.ros.transport.PROFILE_ENV.
PROFILE_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'
#: The nodes started, wired as bringup wires them in one process (bringup.remaps_for).
NODES = list(NODE_CLASSES)
# posesdf_ros.data.scene.VIEWS and posesdf_ros.data.gait.CONDITIONS (test/test_launch.py checks they agree).
VIEWS = ['V1', 'V2', 'V3', 'V4', 'V5', 'V6']
CONDITIONS = ['normal', 'supination', 'pronation', 'in_toeing', 'out_toeing']


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            'fastdds_profile', default_value=PathJoinSubstitution([share, 'config', 'fastdds.xml']),
            description='Fast DDS XML profile (FASTRTPS_DEFAULT_PROFILES_FILE) for the processes started here: '
                        'a 64 MiB shared-memory segment, so that large clouds arrive between processes. The '
                        'process that sends the clouds needs it: start a camera driver with it exported too.'),
        DeclareLaunchArgument(
            'view', default_value='V1', choices=VIEWS,
            description="Benchmark view: the synthetic camera's azimuth around the walker."),
        DeclareLaunchArgument(
            'condition', default_value='normal', choices=CONDITIONS,
            description='Gait condition of the synthetic walker.'),
        DeclareLaunchArgument(
            'profile', default_value='realtime', choices=['realtime', 'fast', 'accurate'],
            description="Inference settings: 'realtime' (the amortised fit, camera rate on a CPU), 'fast' (a short "
                        "latent optimisation), 'accurate' (the lowest error)."),
        DeclareLaunchArgument(
            'device', default_value='cpu', choices=['cpu', 'cuda'],
            description='Torch device of RotNet (canonicaliser) and PoseSDF (estimator).'),
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([share, 'config', 'posesdf.yaml']),
            description='YAML with the parameters of every posesdf_ros node.'),
        DeclareLaunchArgument(
            'rviz', default_value='true',
            description='Start RViz 2 with config/posesdf.rviz.'),
    ]

    params_file = LaunchConfiguration('params_file')
    device = ParameterValue(LaunchConfiguration('device'), value_type=str)

    synthetic_camera = Node(
        package=PACKAGE,
        executable='synthetic_camera',
        name='synthetic_camera',
        output='screen',
        parameters=[params_file, {
            'view': ParameterValue(LaunchConfiguration('view'), value_type=str),
            'condition': ParameterValue(LaunchConfiguration('condition'), value_type=str),
        }],
    )
    canonicaliser = Node(
        package=PACKAGE,
        executable='canonicaliser',
        name='canonicaliser',
        output='screen',
        parameters=[params_file, {'device': device}],
        remappings=list(remaps_for('canonicaliser', NODES).items()),
    )
    estimator = Node(
        package=PACKAGE,
        executable='estimator',
        name='estimator',
        output='screen',
        parameters=[params_file, {
            'profile': ParameterValue(LaunchConfiguration('profile'), value_type=str),
            'device': device,
        }],
        remappings=list(remaps_for('estimator', NODES).items()),
    )
    pose_prior = Node(
        package=PACKAGE,
        executable='pose_prior',
        name='pose_prior',
        output='screen',
        parameters=[params_file, {'device': device}],
        remappings=list(remaps_for('pose_prior', NODES).items()),
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        output='screen',
        arguments=['-d', PathJoinSubstitution([share, 'config', 'posesdf.rviz'])],
        condition=IfCondition(LaunchConfiguration('rviz')),
    )
    return LaunchDescription(arguments + [
        SetEnvironmentVariable(PROFILE_ENV, LaunchConfiguration('fastdds_profile')),
        synthetic_camera, canonicaliser, estimator, pose_prior, rviz,
    ])
