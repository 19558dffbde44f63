// The linear head's training step on the device, around cuBLAS's two matrix products
// (logits = X·Wᵀ + b, ∂W = Gᵀ·X): the bias broadcast before the first, the bias gradient
// (column sums of G, rows in order as on the CPU) and AdamW in place, the same arithmetic as
// difftopk-autodiff's `AdamW::update_slice` with the step's scalars computed on the host.
// Float32 (the CLI's type). Compiled by NVRTC at run time.

// logits[r, c] = bias[c] for `rows` rows of `classes`.
extern "C" __global__ void broadcast_bias_f32(float* logits, const float* bias, int rows, int classes) {
    size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)rows * classes;
    if (index >= total) return;
    logits[index] = bias[index % classes];
}

// out[c] = Σ_r gradient[r, c], summed in row order (one thread per column).
extern "C" __global__ void column_sums_f32(const float* gradient, int rows, int classes, float* out) {
    int column = blockIdx.x * blockDim.x + threadIdx.x;
    if (column >= classes) return;
    float sum = 0.0f;
    for (int r = 0; r < rows; ++r) sum += gradient[(size_t)r * classes + column];
    out[column] = sum;
}

// AdamW for `count` parameters: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
// θ ← θ·keep − step_size·m / (√v·inverse_root_correction + ε).
extern "C" __global__ void adamw_f32(float* values, const float* gradient, float* first_moment,
                                     float* second_moment, long long count, float step_size,
                                     float inverse_root_correction, float keep, float beta1,
                                     float beta2, float one_minus_beta1, float one_minus_beta2,
                                     float epsilon) {
    long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= count) return;
    float g = gradient[index];
    float m = beta1 * first_moment[index] + one_minus_beta1 * g;
    float v = beta2 * second_moment[index] + one_minus_beta2 * g * g;
    first_moment[index] = m;
    second_moment[index] = v;
    float denominator = sqrtf(v) * inverse_root_correction + epsilon;
    values[index] = values[index] * keep - step_size * m / denominator;
}

// A batch gathered on the device from a resident set: out[r, :] = source[rows[r], :] and
// labels_out[r] = labels[rows[r]], one thread per value (`count` rows of `dimension`).
extern "C" __global__ void gather_rows_f32(const float* source, const unsigned* labels,
                                           const unsigned* rows, int count, int dimension,
                                           float* out, unsigned* labels_out) {
    size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)count * dimension;
    if (index >= total) return;
    size_t row = index / dimension, column = index % dimension;
    size_t source_row = rows[row];
    out[index] = source[source_row * dimension + column];
    if (column == 0) labels_out[row] = labels[source_row];
}
