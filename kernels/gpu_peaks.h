/*
 * The one GPU peak table: the CUDA backend's MFU (peak_flops: the TF32 column, the compute type of
 * its fp32 GEMMs), the benchmarks' % of peak and tools/gpu_check.sh's report all read it. Peak numbers
 * of the GPUs, from NVIDIA's data sheets: HBM bandwidth
 * (decimal GB/s), dense tensor-core TF32 and BF16 TFLOP/s (the data sheets' headline figures are
 * with 2:4 sparsity, i.e. twice these), and FP32 on the CUDA cores (non-tensor FFMA).
 *
 * Matched on substrings of cudaDeviceProp.name, most specific first ("H100 PCIe" before "H100",
 * "A100-SXM4-40GB" before "A100-SXM"), so the first hit wins. A GPU not in the table gets NULL and
 * the benchmarks print "peak unknown" instead of a percentage of a guessed peak (llm.c's mfu.h
 * printed -100% for an unknown Blackwell part; we print nothing rather than a wrong number).
 */
#ifndef QSTAR_GPU_PEAKS_H
#define QSTAR_GPU_PEAKS_H

#include <stddef.h>
#include <string.h>

typedef struct {
    const char* match;   // substring of cudaDeviceProp.name
    const char* label;   // what the report calls it
    double hbm_gbs;      // HBM bandwidth, GB/s (1e9 bytes)
    double tf32_tflops;  // dense TF32 tensor core
    double bf16_tflops;  // dense BF16 tensor core
    double fp32_tflops;  // FP32 CUDA cores, no tensor cores
} GpuPeak;

static const GpuPeak gpu_peaks[] = {
    // Hopper. H100 SXM5 names itself "NVIDIA H100 80GB HBM3"; the PCIe card "NVIDIA H100 PCIe".
    {"H200 NVL", "H200 NVL", 4800.0, 417.5, 835.5, 60.0},
    {"H200", "H200 SXM", 4800.0, 494.7, 989.4, 66.9},
    {"H100 NVL", "H100 NVL", 3900.0, 417.5, 835.5, 60.0},
    {"H100 PCIe", "H100 PCIe", 2000.0, 378.0, 756.0, 51.2},
    {"H100", "H100 SXM", 3350.0, 494.7, 989.4, 66.9},
    // Ampere. "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-40GB".
    {"A100-SXM4-40GB", "A100 SXM 40GB", 1555.0, 156.0, 312.0, 19.5},
    {"A100-SXM", "A100 SXM 80GB", 2039.0, 156.0, 312.0, 19.5},
    {"A100 80GB PCIe", "A100 PCIe 80GB", 1935.0, 156.0, 312.0, 19.5},
    {"A100-PCIE-40GB", "A100 PCIe 40GB", 1555.0, 156.0, 312.0, 19.5},
    // the A100's export variant: the same chip and HBM2e as the A100 SXM 80GB
    {"A800", "A800 (A100 SXM 80GB figures)", 2039.0, 156.0, 312.0, 19.5},
};

static inline const GpuPeak* gpu_peak_lookup(const char* device_name) {
    for (size_t i = 0; i < sizeof gpu_peaks / sizeof gpu_peaks[0]; i++)
        if (strstr(device_name, gpu_peaks[i].match)) return &gpu_peaks[i];
    return NULL;
}

#endif
