"""PoseSDF on a real depth camera: canonicaliser + estimator + pose_prior (+ RViz 2).

    ros2 launch posesdf_ros posesdf.launch.py
    ros2 launch posesdf_ros posesdf.launch.py points_topic:=/points2 \
        image_topic:=/rgb/image_raw camera_info_topic:=/rgb/camera_info rviz:=true

The defaults are the topics of realsense2_camera (4.x: namespace `camera`,
camera name `camera`, `pointcloud.enable:=true`); docs/launch.md lists those
of other drivers. The wiring is bringup's PIPELINE_REMAPS: the estimator's
`legs`, `person` and `occluders` come from the canonicaliser's `~/legs`, `~/person`
and `~/occluders`.
They are remapped to *relative* names (`canonicaliser/legs`), which resolve
in the nodes' namespace, so `namespace:=/gait` runs both nodes and their
topics under /gait while the camera topics (absolute) stay where they are.

The nodes are lifecycle (managed) nodes whose executables configure and
activate them (parameter `autostart`, true in config/posesdf.yaml). They are
started with launch_ros.actions.Node rather than LifecycleNode on purpose:
Jazzy's LifecycleNode action only adds lifecycle event handling for
transitions driven from the launch file (it has no autostart there), which
these self-starting nodes do not need; `ros2 lifecycle set` still works on
them because the node, not the action, provides the lifecycle services.

Parameters come from `params_file` (every node's section plus the shared
`/**` camera pose), then the launch arguments below override a few of them.
The per-node sections are keyed `/**/<node>`, so they apply under any
`namespace:=...`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from posesdf_ros.ros.bringup import relative_remaps

PACKAGE = 'posesdf_ros'
#: Fast DDS 2.x (Jazzy) reads its XML profile from here; posesdf_ros.ros.transport.PROFILE_ENV.
PROFILE_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            'fastdds_profile', default_value=PathJoinSubstitution([share, 'config', 'fastdds.xml']),
            description='Fast DDS XML profile (FASTRTPS_DEFAULT_PROFILES_FILE) for the processes started here: '
                        'a 64 MiB shared-memory segment, so that large clouds arrive between processes. The '
                        'process that sends the clouds needs it: start a camera driver with it exported too.'),
        DeclareLaunchArgument(
            'points_topic', default_value='/camera/camera/depth/color/points',
            description='Depth camera point cloud (sensor_msgs/PointCloud2) fed to the canonicaliser.'),
        DeclareLaunchArgument(
            'image_topic', default_value='/camera/camera/color/image_raw',
            description='RGB image for the skeleton overlay (rgb8, bgr8, rgba8, bgra8 or mono8).'),
        DeclareLaunchArgument(
            'camera_info_topic', default_value='/camera/camera/color/camera_info',
            description='CameraInfo of the RGB image, to project the joints onto it.'),
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([share, 'config', 'posesdf.yaml']),
            description='YAML with the parameters of every posesdf_ros node.'),
        DeclareLaunchArgument(
            'backend', default_value='posesdf', choices=['posesdf', 'nvf'],
            description='Joint estimator of the estimator node.'),
        DeclareLaunchArgument(
            'profile', default_value='realtime', choices=['realtime', 'fast', 'accurate'],
            description="Inference settings: 'realtime' (the amortised fit, camera rate on a CPU), 'fast' (a short "
                        "latent optimisation), 'accurate' (the lowest error)."),
        DeclareLaunchArgument(
            'device', default_value='cpu', choices=['cpu', 'cuda'],
            description='Torch device of RotNet (canonicaliser) and PoseSDF (estimator).'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use /clock (true when replaying a bag with --clock).'),
        DeclareLaunchArgument(
            'rviz', default_value='false',
            description='Start RViz 2 with config/posesdf.rviz.'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the canonicaliser, the estimator and the pose_prior '
                        '(empty: the root namespace).'),
    ]

    params_file = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    use_sim_time = ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool)
    device = ParameterValue(LaunchConfiguration('device'), value_type=str)

    canonicaliser = Node(
        package=PACKAGE,
        executable='canonicaliser',
        name='canonicaliser',
        namespace=namespace,
        output='screen',
        parameters=[params_file, {'device': device, 'use_sim_time': use_sim_time}],
        remappings=[('points', LaunchConfiguration('points_topic'))],
    )
    estimator = Node(
        package=PACKAGE,
        executable='estimator',
        name='estimator',
        namespace=namespace,
        output='screen',
        parameters=[params_file, {
            'backend': ParameterValue(LaunchConfiguration('backend'), value_type=str),
            'profile': ParameterValue(LaunchConfiguration('profile'), value_type=str),
            'device': device,
            'use_sim_time': use_sim_time,
        }],
        # bringup.PIPELINE_REMAPS, relative so that they follow `namespace`; the camera topics from the arguments.
        remappings=list(relative_remaps('estimator').items()) + [
            ('image', LaunchConfiguration('image_topic')),
            ('camera_info', LaunchConfiguration('camera_info_topic')),
        ],
    )
    pose_prior = Node(
        package=PACKAGE,
        executable='pose_prior',
        name='pose_prior',
        namespace=namespace,
        output='screen',
        parameters=[params_file, {'device': device, 'use_sim_time': use_sim_time}],
        remappings=list(relative_remaps('pose_prior').items()),
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        output='screen',
        arguments=['-d', PathJoinSubstitution([share, 'config', 'posesdf.rviz'])],
        parameters=[{'use_sim_time': use_sim_time}],
        condition=IfCondition(LaunchConfiguration('rviz')),
    )
    return LaunchDescription(arguments + [
        SetEnvironmentVariable(PROFILE_ENV, LaunchConfiguration('fastdds_profile')),
        canonicaliser, estimator, pose_prior, rviz,
    ])
