"""rosbag2 tools: record synthetic walks with ground truth, evaluate any bag offline or live, play bags.

Everything but `play` and `live` is rclpy-free: bags are written and read
with `rosbags` (MCAP and sqlite3, CDR), so `posesdf bag record` and
`posesdf bag eval` work on machines without ROS. The bag layout (topics,
types, frames, ground truth) is in docs/bags.md and `layout.py`.
"""
