"""Neural networks (torch only): PoseSDF, PointNet++, RotNet, NVF, Pose-NDF."""
