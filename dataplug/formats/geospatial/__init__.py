"""Formats of geospatial data: LiDAR point clouds (LAS and LAZ), Cloud Optimized Point Clouds (COPC) and cloud-optimized GeoTIFF rasters (COG)."""
