#!/bin/bash
# The results page (docs/results.md) from the JSON files under docs/results/: `bash tools/results_page.sh [OUT]`.
# PYTHON: the interpreter with posesdf_ros installed (default the venv of `make setup`). Each table lists the files its rows come from, with the command that made each.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-.venv/bin/python}" -m posesdf_ros.cli report \
    docs/results/posesdf_accurate_all.json \
    docs/results/posesdf_accurate_cc_full.json \
    docs/results/posesdf_accurate_cv_full.json \
    docs/results/posesdf_accurate_cccv_full.json \
    docs/results/nvf_accurate_cccv_full.json \
    docs/results/posesdf_accurate_all_1start.json \
    docs/results/nvf_accurate_all.json \
    docs/results/posesdf_fast_scene_rotnet_full.json \
    docs/results/posesdf_fast_scene_gtyaw_full.json \
    docs/results/posesdf_fast_scene_rotnet_all.json \
    docs/results/posesdf_realtime_scene_rotnet_all.json \
    docs/results/nvf_fast_scene_rotnet_all.json \
    docs/results/posesdf_fast_scene_gtyaw_all.json \
    docs/results/posesdf_fast_scene_norotnet_all.json \
    docs/results/pn2_all.json \
    docs/results/posesdf_fast_scene_rotnet_test5.json \
    docs/results/posesdf_fast_scene_rotnet_shifted.json \
    docs/results/posesdf_realtime_scene_rotnet_shifted.json \
    docs/results/posesdf_fast_scene_rotnet_test5_product.json \
    docs/results/posesdf_fast_scene_rotnet_test5_product_1member.json \
    docs/results/posesdf_fast_scene_rotnet_shifted_product.json \
    docs/results/posesdf_fast_scene_rotnet_shifted_product_1member.json \
    docs/results/posesdf_fast_scene_rotnet_ptest5_product.json \
    docs/results/posesdf_fast_scene_rotnet_shifted_none_product.json \
    docs/results/posesdf_fast_scene_rotnet_shifted_holes_product.json \
    docs/results/posesdf_fast_scene_rotnet_shifted_deptherror_product.json \
    docs/results/posesdf_realtime_scene_rotnet_test5_product.json \
    docs/results/posesdf_realtime_scene_rotnet_test5_product_1member.json \
    docs/results/posesdf_realtime_scene_rotnet_shifted_product.json \
    docs/results/posesdf_realtime_scene_rotnet_shifted_product_1member.json \
    docs/results/nvf_fast_scene_rotnet_test5_product.json \
  --bench \
    docs/results/bench_cpu.json \
    docs/results/bench_cuda.json \
    docs/results/bench_cuda_cold.json \
  --yaw \
    docs/results/rotnet_yaw_full.json \
  --segmentation \
    docs/results/segmentation_legseg_all.json \
    docs/results/segmentation_all.json \
    docs/results/segmentation_test87_legseg.json \
    docs/results/segmentation_test87_legseg_decimation2.json \
    docs/results/segmentation_test87_legsegfast.json \
    docs/results/segmentation_test87_legsegfast_decimation2.json \
    docs/results/segmentation_test87_legsegfast_coarse.json \
    docs/results/segmentation_shifted_legseg.json \
    docs/results/segmentation_shifted_legsegfast.json \
    docs/results/segmentation_shifted_legseg_product.json \
    docs/results/segmentation_test87_legseg_product.json \
    docs/results/segmentation_productval_legsegfast.json \
    docs/results/segmentation_productval_legseg_product.json \
    docs/results/segmentation_pval5_legseg.json \
    docs/results/segmentation_pval5_legseg_mixed.json \
    docs/results/segmentation_val5_legseg.json \
    docs/results/segmentation_val5_legseg_mixed.json \
    docs/results/segmentation_test5_legseg_mixed70.json \
    docs/results/segmentation_shifted_legseg_mixed70.json \
    docs/results/segmentation_pval5_legseg_mixed70.json \
    docs/results/segmentation_val5_legseg_mixed70.json \
  --prior \
    docs/results/prior/prior.json \
  --out "${1:-docs/results.md}"
