"""The LAS container family, shared by the LiDAR (LAS/LAZ) and COPC formats: the header and VLRs, LAZ
chunks, the LiDAR block index and its geometry, COPC's octree hierarchy, and the point slices."""
