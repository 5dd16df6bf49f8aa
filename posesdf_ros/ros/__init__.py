"""The ROS 2 layer: nodes, conversions, markers, bringup. The only package that imports rclpy."""
