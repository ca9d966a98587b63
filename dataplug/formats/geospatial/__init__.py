"""Formats of geospatial data: LiDAR point clouds (LAS and LAZ)."""
