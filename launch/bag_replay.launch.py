"""Replay a bag to the pipeline with `ros2 bag play --clock` and record the outputs (full ROS 2 install).

    ros2 launch posesdf_ros bag_replay.launch.py bag:=walk_bag rate:=0.25 output_bag:=walk_outputs
    posesdf bag eval walk_bag --estimates walk_outputs      # score the recorded joints against the bag's truth

It includes posesdf.launch.py (canonicaliser + estimator) with
`use_sim_time:=true` and the bag's camera topics, starts `ros2 bag record`
of the outputs (`record:=false` turns it off), waits `start_delay` seconds
for the nodes to load their models, then runs `ros2 bag play --clock` at
`rate`; when the play ends it waits `tail_s` seconds for the last frames
and shuts everything down. `posesdf bag eval BAG --live` does the same
without rosbag2 and launch. With tf2 installed the canonicaliser places
the cloud with the bag's /tf_static; without, set the camera_* parameters
in `params_file`.
"""
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    RegisterEventHandler,
    SetEnvironmentVariable,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'posesdf_ros'
#: Fast DDS 2.x (Jazzy) reads its XML profile from here; posesdf_ros.ros.transport.PROFILE_ENV.
PROFILE_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'
#: What `ros2 bag record` keeps: the estimator's and the prior's joints, the person frames, diagnostics.
RECORDED_TOPICS = ['/estimator/joints', '/pose_prior/joints', '/canonicaliser/person', '/diagnostics']


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            'fastdds_profile', default_value=PathJoinSubstitution([share, 'config', 'fastdds.xml']),
            description='Fast DDS XML profile (FASTRTPS_DEFAULT_PROFILES_FILE) for the processes started here: '
                        'a 64 MiB shared-memory segment, so that large clouds arrive between processes. The '
                        'process that sends the clouds needs it: start a camera driver with it exported too.'),
        DeclareLaunchArgument('bag', description='The rosbag2 to replay (folder or file).'),
        DeclareLaunchArgument('rate', default_value='1.0',
                              description='Playback rate; below 1 when the estimator is slower than the camera.'),
        DeclareLaunchArgument('start_delay', default_value='15.0',
                              description='Seconds to wait for the nodes to load their models before playing.'),
        DeclareLaunchArgument('tail_s', default_value='10.0',
                              description='Seconds to wait after the play for the last frames, then shut down.'),
        DeclareLaunchArgument('points_topic', default_value='/camera/points',
                              description="The bag's PointCloud2 topic (posesdf bag record's by default)."),
        DeclareLaunchArgument('image_topic', default_value='/camera/image',
                              description="The bag's RGB image topic, for the overlay."),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description="The bag's CameraInfo topic, for the overlay."),
        DeclareLaunchArgument('record', default_value='true',
                              description='Record the outputs with ros2 bag record.'),
        DeclareLaunchArgument('output_bag', default_value='posesdf_outputs',
                              description='Folder of the recorded outputs (must not exist yet).'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'posesdf.yaml']),
                              description='YAML with the parameters of every posesdf_ros node.'),
        DeclareLaunchArgument('profile', default_value='realtime', choices=['realtime', 'fast', 'accurate'],
                              description="Estimator profile: 'realtime' (the amortised fit, camera rate on a "
                                          "CPU), 'fast' (a short latent optimisation), 'accurate' (the lowest "
                                          "error)."),
        DeclareLaunchArgument('rviz', default_value='false', description='Start RViz 2 with config/posesdf.rviz.'),
    ]
    pipeline = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'posesdf.launch.py'])),
        launch_arguments={
            'points_topic': LaunchConfiguration('points_topic'),
            'image_topic': LaunchConfiguration('image_topic'),
            'camera_info_topic': LaunchConfiguration('camera_info_topic'),
            'params_file': LaunchConfiguration('params_file'),
            'fastdds_profile': LaunchConfiguration('fastdds_profile'),
            'profile': LaunchConfiguration('profile'),
            'rviz': LaunchConfiguration('rviz'),
            'use_sim_time': 'true',
        }.items(),
    )
    record = ExecuteProcess(
        cmd=['ros2', 'bag', 'record', '--use-sim-time', '-s', 'mcap', '-o', LaunchConfiguration('output_bag')]
        + RECORDED_TOPICS,
        output='screen',
        condition=IfCondition(LaunchConfiguration('record')),
    )
    play = ExecuteProcess(
        cmd=['ros2', 'bag', 'play', LaunchConfiguration('bag'), '--clock', '--rate', LaunchConfiguration('rate')],
        output='screen',
    )
    shutdown_after_play = RegisterEventHandler(OnProcessExit(
        target_action=play,
        on_exit=[TimerAction(period=LaunchConfiguration('tail_s'),
                             actions=[EmitEvent(event=Shutdown(reason='bag replay finished'))])],
    ))
    return LaunchDescription(arguments + [
        SetEnvironmentVariable(PROFILE_ENV, LaunchConfiguration('fastdds_profile')),
        pipeline, record, shutdown_after_play,
        TimerAction(period=LaunchConfiguration('start_delay'), actions=[play]),
    ])
