// The top-k cross-entropy loss of Petersen et al. (ICML 2022), fused forward + backward: one
// thread per row (`topk_loss_*`, every configuration) or, for rows with a preselection, one
// warp per row (`topk_loss_warp_*`, below): preselection of m, the network sweep of values and
// the true class's mass (spec section 12) or the NeuralSort / SoftSort rows, mixture / clamp / log, the reverse pass,
// the scatter of the gradient.
// The same steps, in the same order, as difftopk-core's `loss::sample_loss`; compiled by NVRTC
// at run time (no CUDA headers needed).
//
// Network tables: comparators as int4 (wire_a, wire_b, out_min, out_max), layer after layer.
// Global scratch: `reals` holds 4·C (tape) + 4·n' + K·n' + n' reals per row, `indices` n' + K
// indices per row,
// interleaved across rows (entry e of row r at e·batch + r) so that the threads of a warp, which
// run neighbouring rows in lockstep, touch neighbouring addresses (coalesced accesses).
//
// `status[0]` receives the smallest row with a label out of range, `status[1]` the smallest row
// with a non-finite logit (atomicMin; the host initialises both to INT_MAX); such rows are
// skipped (loss 0, gradient untouched) and the host reports the error.

// Overloads so that the templates below read like the Rust code.
__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double d_pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float d_erf(float x) { return erff(x); }
__device__ __forceinline__ double d_erf(double x) { return erf(x); }
__device__ __forceinline__ float d_atan(float x) { return atanf(x); }
__device__ __forceinline__ double d_atan(double x) { return atan(x); }
__device__ __forceinline__ float d_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double d_abs(double x) { return fabs(x); }

// Relaxations, numbered as the host passes them.
#define RELAXATION_LOGISTIC 0
#define RELAXATION_LOGISTIC_PHI 1
#define RELAXATION_GAUSSIAN 2
#define RELAXATION_RECIPROCAL 3
#define RELAXATION_CAUCHY 4
#define RELAXATION_OPTIMAL 5

#define MODE_SOFTMAX 0
#define MODE_SOFTMAX_CROSS_ENTROPY 1
#define MODE_SORT 2

template <typename T> __device__ __forceinline__ T sigmoid(T x) {
    return T(1) / (T(1) + d_exp(-x));
}

// x^λ with torch's special cases (λ = ½: √x, ¼: √√x, 1: x, 0: 1).
template <typename T> __device__ __forceinline__ T art_power(T x, T lambda) {
    if (lambda == T(0.5)) return d_sqrt(x);
    if (lambda == T(0.25)) return d_sqrt(d_sqrt(x));
    if (lambda == T(1)) return x;
    if (lambda == T(0)) return T(1);
    return d_pow(x, lambda);
}

// α = f(v) and f'(v) of the relaxed comparator (spec section 1.1, core relaxation.rs).
template <typename T>
__device__ __forceinline__ void alpha_and_slope(int relaxation, T v, T beta, T lambda, T* alpha, T* slope) {
    const T guard = T(1e-10);
    switch (relaxation) {
    case RELAXATION_LOGISTIC: {
        T s = sigmoid(v * beta);
        *alpha = s;
        *slope = beta * s * (T(1) - s);
        break;
    }
    case RELAXATION_LOGISTIC_PHI: {
        T shifted = d_abs(v) + guard;
        T denominator = art_power(shifted, lambda);
        // Where beta v and the power both overflow (lambda > 1, huge |v|): (v / power) beta,
        // as the core.
        T ratio = isfinite(denominator) ? v * beta / denominator : v / denominator * beta;
        T s = sigmoid(ratio);
        T inner = shifted - lambda * d_abs(v);
        T numerator = s * (T(1) - s) * beta * inner;
        T scale = denominator * shifted;
        *alpha = s;
        *slope = (isfinite(numerator) && isfinite(scale))
                     ? numerator / scale
                     : s * (T(1) - s) * beta * (inner / shifted) / denominator;
        break;
    }
    case RELAXATION_GAUSSIAN: {
        T u = v * beta;
        *alpha = T(0.5) + T(0.5) * d_erf(u * T(0.70710678118654752440));
        *slope = beta * T(0.3989422804014327) * d_exp(-T(0.5) * u * u);
        break;
    }
    case RELAXATION_RECIPROCAL: {
        T u = v * beta;
        T d = T(2) + d_abs(u);
        // +-1 where beta v overflowed (inf/inf), as the core.
        T ratio = isfinite(d) ? u / d : (u < T(0) ? T(-1) : T(1));
        *alpha = T(0.5) * (ratio + T(1));
        *slope = beta / (d * d);
        break;
    }
    case RELAXATION_CAUCHY: {
        T u = v * beta;
        const T pi = T(3.14159265358979323846);
        *alpha = d_atan(u) / pi + T(0.5);
        *slope = beta / (pi * (T(1) + u * u));
        break;
    }
    default: { // optimal
        T u = v * beta;
        if (d_abs(u) <= T(0.25)) {
            *alpha = u + T(0.5);
            *slope = beta;
        } else {
            T shifted = d_abs(u) + guard;
            T tail = T(0.25) - T(1.0 / 16.0) / shifted;
            *alpha = u > T(0) ? T(0.25) + T(0.5) + tail : -T(0.25) + T(0.5) - tail;
            *slope = beta / (T(16) * shifted * shifted);
        }
        break;
    }
    }
}

// A row's entries in the interleaved scratch: entry i at base[i·stride].
template <typename T> struct Strided {
    T* base;
    size_t stride;
    __device__ __forceinline__ T& operator[](int i) const { return base[(size_t)i * stride]; }
    __device__ __forceinline__ Strided<T> offset(int entries) const {
        return Strided<T>{base + (size_t)entries * stride, stride};
    }
};

// Indices of the `count` largest values other than `skip`, descending; ties to the lower index,
// or with TIES_HIGH to the higher one (SoftSort's order). `Values` is a pointer or a Strided row.
template <bool TIES_HIGH, typename Values>
__device__ void largest_indices(Values values, int n, int skip, Strided<unsigned> out, int count) {
    int filled = 0;
    auto minimum = values[0];
    for (int i = 0; i < n; ++i) {
        if (i == skip) continue;
        auto value = values[i];
        if (filled == count) {
            if (!(value > minimum || (TIES_HIGH && value == minimum))) continue;
            filled -= 1;
        }
        int position = filled;
        while (position > 0 && (values[out[position - 1]] < value ||
                                (TIES_HIGH && values[out[position - 1]] == value))) {
            out[position] = out[position - 1];
            position -= 1;
        }
        out[position] = (unsigned)i;
        filled += 1;
        minimum = values[out[filled - 1]];
    }
}

// Softmax of `row[0..n)` in place, in the core's order (max, exponentials, sum, scaling).
template <typename T> __device__ void softmax_in_place(Strided<T> row, int n) {
    T maximum = row[0];
    for (int i = 1; i < n; ++i) if (row[i] > maximum) maximum = row[i];
    for (int i = 0; i < n; ++i) row[i] = d_exp(row[i] - maximum);
    T sum = T(0);
    for (int i = 0; i < n; ++i) sum += row[i];
    T inverse = T(1) / sum;
    for (int i = 0; i < n; ++i) row[i] *= inverse;
}

template <typename T> __device__ __forceinline__ T sign_of(T x) {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

// `preselect`: 0 all classes are sorted; PRESELECT_HERE the row selects its m and zeroes the
// gradient row itself; PRESELECT_DONE the caller (a warp, below) has done both.
#define PRESELECT_HERE 1
#define PRESELECT_DONE 2
// A row's first selected index after `topk_select_warp_*` found the row bad.
#define BAD_ROW 0xffffffffu

#define FAMILY_NETWORK 0
#define FAMILY_NEURALSORT 1
#define FAMILY_SOFTSORT 2

// Comparator c of the forward sweep with the label's mass (spec section 12): the relaxed min and
// max of wires a, b into out_min, out_max, for the values x and the mass v; records α, α's
// slope f', f'·(a − b) and f'·(v_a − v_b) on the tape (the slope first: as the core, no
// intermediate overflows where it is tiny and a − b huge).
template <typename T>
__device__ __forceinline__ void forward_comparator(const int4* comparators, int c, int relaxation,
                                                   T beta, T lambda, Strided<T> x, Strided<T> v,
                                                   Strided<T> tape) {
    int4 comparator = comparators[c];
    T a = x[comparator.x], b = x[comparator.y];
    T va = v[comparator.x], vb = v[comparator.y];
    T alpha, slope;
    alpha_and_slope(relaxation, b - a, beta, lambda, &alpha, &slope);
    T one_minus = T(1) - alpha;
    x[comparator.z] = alpha * a + one_minus * b;
    x[comparator.w] = one_minus * a + alpha * b;
    v[comparator.z] = alpha * va + one_minus * vb;
    v[comparator.w] = one_minus * va + alpha * vb;
    tape[4 * c] = alpha;
    tape[4 * c + 1] = slope;
    tape[4 * c + 2] = slope * (a - b);
    tape[4 * c + 3] = slope * (va - vb);
}

// Comparator c of the reverse sweep: the adjoints of its outputs (x: values, v: mass) back to
// its inputs, through α as well.
template <typename T>
__device__ __forceinline__ void backward_comparator(const int4* comparators, int c, Strided<T> x,
                                                    Strided<T> v, Strided<T> tape) {
    int4 comparator = comparators[c];
    T alpha = tape[4 * c], slope = tape[4 * c + 1];
    T sloped_difference = tape[4 * c + 2], sloped_mass_difference = tape[4 * c + 3];
    T one_minus = T(1) - alpha;
    T gmin = x[comparator.z], gmax = x[comparator.w];
    T hmin = v[comparator.z], hmax = v[comparator.w];
    T through = sloped_difference * (gmin - gmax) + sloped_mass_difference * (hmin - hmax);
    // 0 where saturated: a product may have overflowed there (0 * inf = NaN); as the core.
    T through_alpha = slope == T(0) ? T(0) : through;
    x[comparator.x] = alpha * gmin + one_minus * gmax - through_alpha;
    x[comparator.y] = one_minus * gmin + alpha * gmax + through_alpha;
    v[comparator.x] = alpha * hmin + one_minus * hmax;
    v[comparator.y] = one_minus * hmin + alpha * hmax;
}

// The top-1 mode's mixture, the clamp and the log (spec section 5): from the label's mass
// mixture q, its softmax probability (mode `sm`), log Σ exp and its logit (mode `smce`), the
// row's loss and ∂loss/∂q. Shared by `topk_row` and `topk_row_network_warp`, so that both do
// the same arithmetic.
template <typename T>
__device__ __forceinline__ void clamp_and_log(int mode, T q, T p_first, T label_probability,
                                              T log_partition, T label_logit, T rest_weight,
                                              T* loss, T* q_adjoint) {
    const T clamp_scale = T(1.0 - 2e-7);
    const T clamp_shift = T(1e-7);
    if (mode == MODE_SOFTMAX) {
        q += p_first * label_probability;
        T clamped = q * clamp_scale + clamp_shift;
        *loss = -d_log(clamped);
        *q_adjoint = -clamp_scale / clamped;
    } else if (mode == MODE_SORT) {
        T clamped = q * clamp_scale + clamp_shift;
        *loss = -d_log(clamped);
        *q_adjoint = -clamp_scale / clamped;
    } else {
        T cross_entropy = log_partition - label_logit;
        T clamped = q * clamp_scale + clamp_shift;
        *loss = p_first * cross_entropy - rest_weight * d_log(clamped);
        *q_adjoint = -rest_weight * clamp_scale / clamped;
    }
}

// Adds the top-1 term's adjoint to x (the adjoints of the selected logits), for wires
// first, first + step, ... below n: through the softmax (mode `sm`) or the cross-entropy
// (`smce`); nothing in mode `sort`.
template <typename T>
__device__ __forceinline__ void add_top1_adjoint(int mode, T q_adjoint, T p_first,
                                                 Strided<T> probabilities, int sorted_label, int n,
                                                 int first, int step, Strided<T> x) {
    if (mode == MODE_SOFTMAX) {
        T factor = q_adjoint * p_first * probabilities[sorted_label];
        for (int i = first; i < n; i += step)
            x[i] += factor * ((i == sorted_label ? T(1) : T(0)) - probabilities[i]);
    } else if (mode == MODE_SOFTMAX_CROSS_ENTROPY) {
        for (int i = first; i < n; i += step)
            x[i] += p_first * (probabilities[i] - (i == sorted_label ? T(1) : T(0)));
    }
}

template <typename T>
__device__ void topk_row(
    const T* logits, unsigned label, int classes, int n, const int4* comparators, int count,
    int k, const double* rank_weights, double p_first_d, double rest_weight_d, int mode,
    int preselect, int family, int relaxation, T beta, T lambda, T scale, T* loss_out,
    T* gradient, Strided<T> reals, Strided<unsigned> selection) {
    Strided<T> tape = reals;                       // 4 per comparator: α, f', f'(a − b), f'(v_a − v_b)
    Strided<T> x = reals.offset(4 * count);        // values (forward) / their adjoints (backward)
    Strided<T> v = x.offset(n);                    // mass (forward) / its adjoint (backward)
    Strided<T> selected = v.offset(n);             // the sorted classes' logits
    Strided<T> probabilities = selected.offset(n); // softmax of `selected`
    Strided<T> rows = probabilities.offset(n);     // NeuralSort / SoftSort: k rows of n
    Strided<T> deviations = rows.offset(k * n);    // NeuralSort: c, then its adjoint
    Strided<unsigned> top = selection.offset(n);   // SoftSort: the k largest, ties high
    int sorted_label;
    if (preselect) {
        if (preselect == PRESELECT_HERE) {
            selection[0] = label;
            largest_indices<false>(logits, classes, (int)label, selection.offset(1), n - 1);
        }
        sorted_label = 0;
    } else {
        for (int i = 0; i < n; ++i) selection[i] = (unsigned)i;
        sorted_label = (int)label;
    }
    for (int i = 0; i < n; ++i) {
        selected[i] = logits[selection[i]];
        x[i] = selected[i];
        v[i] = i == sorted_label ? T(1) : T(0);
    }
    // The label's mass at rank ρ (ρ = 0 the largest): mass(ρ).
    if (family == FAMILY_NETWORK) {
        for (int c = 0; c < count; ++c)
            forward_comparator(comparators, c, relaxation, beta, lambda, x, v, tape);
    } else if (family == FAMILY_NEURALSORT) {
        // P̂[ρ, i] = softmax_i(β (s_i (n − 1 − 2ρ) − c_i)), c_i = Σ_l |s_i − s_l| (all pairs,
        // summed in order; the core, for n ≤ 256, sums them in eight interleaved partial sums:
        // the same value within rounding, which the parity bounds allow for).
        for (int i = 0; i < n; ++i) {
            T sum = T(0);
            for (int l = 0; l < n; ++l) {
                T difference = selected[i] - selected[l];
                sum += difference < T(0) ? -difference : difference;
            }
            deviations[i] = sum;
        }
        for (int rank = 0; rank < k; ++rank) {
            Strided<T> row = rows.offset(rank * n);
            T row_scale = T(n - 1 - 2 * rank);
            // beta (z - max z): beta z itself may overflow (as the core).
            T top = selected[0] * row_scale - deviations[0];
            for (int i = 0; i < n; ++i) {
                row[i] = selected[i] * row_scale - deviations[i];
                top = row[i] > top ? row[i] : top;
            }
            for (int i = 0; i < n; ++i) row[i] = (row[i] - top) * beta;
            softmax_in_place(row, n);
        }
    } else {
        // P̂[ρ, i] = softmax_i(−β |s_i − s_(ρ)|), s_(ρ) the ρ-th largest (ties: higher index).
        largest_indices<true>(selected, n, -1, top, k);
        for (int rank = 0; rank < k; ++rank) {
            Strided<T> row = rows.offset(rank * n);
            T center = selected[top[rank]];
            for (int i = 0; i < n; ++i) row[i] = d_exp(-beta * d_abs(selected[i] - center));
            T sum = T(0);
            for (int i = 0; i < n; ++i) sum += row[i];
            T inverse = T(1) / sum;
            for (int i = 0; i < n; ++i) row[i] *= inverse;
        }
    }
    // Mixture, clamp, log.
    T p_first = T(p_first_d);
    T q = T(0);
    for (int rank = 0; rank < k; ++rank) {
        T mass = family == FAMILY_NETWORK ? v[n - 1 - rank] : rows[rank * n + sorted_label];
        q += T(rank_weights[rank]) * mass;
    }
    T log_partition = T(0);
    if (mode != MODE_SORT) {
        T maximum = selected[0];
        for (int i = 1; i < n; ++i) if (selected[i] > maximum) maximum = selected[i];
        T sum = T(0);
        for (int i = 0; i < n; ++i) probabilities[i] = d_exp(selected[i] - maximum);
        for (int i = 0; i < n; ++i) sum += probabilities[i];
        T inverse = T(1) / sum;
        for (int i = 0; i < n; ++i) probabilities[i] *= inverse;
        log_partition = maximum + d_log(sum);
    }
    T loss, q_adjoint;
    clamp_and_log(mode, q, p_first, mode == MODE_SOFTMAX ? probabilities[sorted_label] : T(0),
                  log_partition, selected[sorted_label], T(rest_weight_d), &loss, &q_adjoint);
    *loss_out = loss;
    if (gradient == 0) return;
    // Reverse pass into x (the adjoints of the selected logits); the mass adjoint of rank ρ is
    // q̄ · w_ρ.
    for (int i = 0; i < n; ++i) { x[i] = T(0); v[i] = T(0); }
    if (family == FAMILY_NETWORK) {
        for (int rank = 0; rank < k; ++rank) v[n - 1 - rank] = q_adjoint * T(rank_weights[rank]);
        for (int c = count - 1; c >= 0; --c) backward_comparator(comparators, c, x, v, tape);
    } else {
        // Row ρ's adjoint is ā_ρ at the label's column only; through the softmax,
        // ḡ_i = P̂[ρ,i] (δ_i,label ā_ρ − P̂[ρ,label] ā_ρ).
        if (family == FAMILY_NEURALSORT) {
            for (int i = 0; i < n; ++i) deviations[i] = T(0); // now c̄
        }
        for (int rank = 0; rank < k; ++rank) {
            Strided<T> row = rows.offset(rank * n);
            T mass_adjoint = q_adjoint * T(rank_weights[rank]);
            T dot = row[sorted_label] * mass_adjoint;
            if (family == FAMILY_NEURALSORT) {
                T row_scale = T(n - 1 - 2 * rank) * beta;
                for (int i = 0; i < n; ++i) {
                    T adjoint = row[i] * ((i == sorted_label ? mass_adjoint : T(0)) - dot);
                    x[i] += adjoint * row_scale;
                    deviations[i] -= adjoint * beta;
                }
            } else {
                int center_index = (int)top[rank];
                T center = selected[center_index];
                T center_bar = T(0);
                for (int i = 0; i < n; ++i) {
                    T adjoint = row[i] * ((i == sorted_label ? mass_adjoint : T(0)) - dot);
                    T d = adjoint * beta * sign_of(selected[i] - center);
                    x[i] -= d;
                    center_bar += d;
                }
                x[center_index] += center_bar;
            }
        }
        if (family == FAMILY_NEURALSORT) {
            // ∂c/∂s: Σ_l sign(s_i − s_l)(c̄_i + c̄_l).
            for (int i = 0; i < n; ++i) {
                T sum = T(0);
                for (int l = 0; l < n; ++l) {
                    T both = deviations[i] + deviations[l];
                    sum += selected[i] > selected[l] ? both : (selected[i] < selected[l] ? -both : T(0));
                }
                x[i] += sum;
            }
        }
    }
    add_top1_adjoint(mode, q_adjoint, p_first, probabilities, sorted_label, n, 0, 1, x);
    if (preselect == PRESELECT_HERE) for (int j = 0; j < classes; ++j) gradient[j] = T(0);
    for (int i = 0; i < n; ++i) gradient[selection[i]] = x[i] * scale;
}

// Checks row `row`'s label and logits; records the first bad row in `status` and returns false.
// A logit the top-k loss and the operators accept: finite and within +-1e32 (the core's
// MAX_LOGIT; NaN fails the comparison). The host names which of the two a flagged row breaks.
template <typename T> __device__ bool in_loss_range(T value) {
    return fabs(value) <= T(1e32);
}

template <typename T>
__device__ bool row_is_valid(const T* logits, unsigned label, int classes, int row, int* status) {
    if (label >= (unsigned)classes) {
        atomicMin(status, row);
        return false;
    }
    for (int j = 0; j < classes; ++j) {
        if (!in_loss_range(logits[j])) {
            atomicMin(status + 1, row);
            return false;
        }
    }
    return true;
}

// The parameters of `topk_loss_*` and of the warp kernels `topk_loss_warp_*` and
// `topk_loss_warp_sweep_*` (below), so that the host launches any of them with the same
// arguments; the warp kernels ignore `preselect` (their rows have one), `reals` and `indices`
// (their scratch is in shared memory), and only the sweep reads `layer_starts`: the comparators
// in `layers` runs of mutually independent ones (no wire shared within a run), run l being
// comparators layer_starts[l] .. layer_starts[l + 1] − 1.
#define TOPK_LOSS_PARAMETERS(T)                                                                    \
    const T *logits, const unsigned *labels, int batch, int classes, int n,                        \
        const int4 *comparators, int count, const int *layer_starts, int layers, int k,            \
        const double *rank_weights, double p_first,                                                \
        double rest_weight, int mode, int preselect, int family, int relaxation, double beta,      \
        double lambda, double scale, T *losses, T *gradient, int with_gradient, T *reals,          \
        unsigned *indices, int *status

#define TOPK_LOSS_KERNEL(NAME, T)                                                                  \
    extern "C" __global__ void NAME(TOPK_LOSS_PARAMETERS(T)) {                                     \
        int row = blockIdx.x * blockDim.x + threadIdx.x;                                           \
        if (row >= batch) return;                                                                  \
        const T* row_logits = logits + (size_t)row * classes;                                      \
        bool valid = preselect == PRESELECT_DONE                                                   \
                         ? indices[row] != BAD_ROW /* checked by topk_select_warp */               \
                         : row_is_valid(row_logits, labels[row], classes, row, status);            \
        if (!valid) {                                                                              \
            losses[row] = T(0);                                                                    \
            return;                                                                                \
        }                                                                                          \
        topk_row<T>(row_logits, labels[row], classes, n, comparators, count, k, rank_weights,      \
                    p_first, rest_weight, mode, preselect, family, relaxation, T(beta), T(lambda), \
                    T(scale), losses + row,                                                        \
                    with_gradient ? gradient + (size_t)row * classes : (T*)0,                      \
                    Strided<T>{reals + row, (size_t)batch},                                        \
                    Strided<unsigned>{indices + row, (size_t)batch});                              \
    }

TOPK_LOSS_KERNEL(topk_loss_f32, float)
TOPK_LOSS_KERNEL(topk_loss_f64, double)

// ---------------------------------------------------------------------------------------------
// One warp per row. The lanes read the row together (lane l takes entries l, l + 32, ...), so
// every load and store of a row is coalesced; warp shuffles combine what the lanes found.
#define WARP_SIZE 32
#define ALL_LANES 0xffffffffu

// Whether (value_a, index_a) comes before (value_b, index_b) in the preselection's order: larger
// value first, ties to the lower index (the core's `largest_indices`); index < 0 is "none" and
// comes last.
template <typename T>
__device__ __forceinline__ bool comes_before(T value_a, int index_a, T value_b, int index_b) {
    if (index_a < 0) return false;
    if (index_b < 0) return true;
    return value_a > value_b || (value_a == value_b && index_a < index_b);
}

// The first (value, index) over the warp in that order; every lane receives it.
template <typename T> __device__ __forceinline__ void warp_first(T* value, int* index) {
    for (int offset = WARP_SIZE / 2; offset > 0; offset >>= 1) {
        T other_value = __shfl_xor_sync(ALL_LANES, *value, offset);
        int other_index = __shfl_xor_sync(ALL_LANES, *index, offset);
        if (comes_before(other_value, other_index, *value, *index)) {
            *value = other_value;
            *index = other_index;
        }
    }
}

template <typename T> __device__ __forceinline__ T warp_maximum(T value) {
    for (int offset = WARP_SIZE / 2; offset > 0; offset >>= 1) {
        T other = __shfl_xor_sync(ALL_LANES, value, offset);
        if (other > value) value = other;
    }
    return value;
}

template <typename T> __device__ __forceinline__ T warp_sum(T value) {
    for (int offset = WARP_SIZE / 2; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(ALL_LANES, value, offset);
    return value;
}

// Bytes of shared memory one warp of `topk_loss_warp_*` uses: the row's reals (as in the global
// scratch: 4·C + (5 + K)·n), then its n + K indices, each part rounded up to 8 bytes. The host
// computes the same (gpu/src/loss.rs, `KernelArguments::warp_bytes`).
__device__ __forceinline__ size_t round_up_8(size_t bytes) { return (bytes + 7) & ~(size_t)7; }

// A row's preselection by one warp (the label first, then the n − 1 largest other classes in
// descending order, ties to the lower index: exactly the core's), and its gradient row zeroed:
//   1. one coalesced pass: the label and finiteness checks, and each lane's first candidate (its
//      largest entry other than the label);
//   2. n − 1 rounds: the warp's first candidate is the next selected class; only the lane that
//      owned it looks for its next candidate, among its entries after the winner in that order;
//   3. the gradient row zeroed by all lanes (coalesced), unless `row_gradient` is null.
// Returns false for a bad row (lane 0 records it in `status`). Ends with the warp synchronised,
// so that lane 0 sees the selection and the zeros.
template <typename T>
__device__ bool warp_select_row(const T* z, unsigned label, int classes, int n, int row,
                                int* status, Strided<unsigned> selection, T* row_gradient) {
    const int lane = threadIdx.x % WARP_SIZE;
    if (label >= (unsigned)classes) {
        if (lane == 0) atomicMin(status, row);
        return false;
    }
    bool finite = true;
    T best_value = T(0);
    int best_index = -1;
#pragma unroll 4
    for (int j = lane; j < classes; j += WARP_SIZE) {
        T value = z[j];
        finite = finite && in_loss_range(value);
        if (j != (int)label && comes_before(value, j, best_value, best_index)) {
            best_value = value;
            best_index = j;
        }
    }
    if (__any_sync(ALL_LANES, !finite)) {
        if (lane == 0) atomicMin(status + 1, row);
        return false;
    }
    if (lane == 0) selection[0] = label;
    for (int rank = 1; rank < n; ++rank) {
        T winner_value = best_value;
        int winner_index = best_index;
        warp_first(&winner_value, &winner_index);
        if (lane == 0) selection[rank] = (unsigned)winner_index;
        if (winner_index % WARP_SIZE == lane) {
            best_index = -1;
#pragma unroll 4
            for (int j = lane; j < classes; j += WARP_SIZE) {
                T value = z[j];
                bool after_winner =
                    value < winner_value || (value == winner_value && j > winner_index);
                if (j != (int)label && after_winner && comes_before(value, j, best_value, best_index)) {
                    best_value = value;
                    best_index = j;
                }
            }
        }
    }
    if (row_gradient)
        for (int j = lane; j < classes; j += WARP_SIZE) row_gradient[j] = T(0);
    __syncwarp();
    return true;
}

// `topk_row` for a sorting network with the row's scratch in shared memory, by all 32 lanes of
// the row's warp (the preselection done, the label first): the comparators of each run of
// independent ones (`layer_starts`) spread over the lanes, a __syncwarp between runs; the
// elementwise steps by wire (lane l takes wires l, l + 32, ...); the sums in wire order and the
// scalar steps by every lane alike (same inputs, same operations: the same values everywhere,
// no broadcast needed). Each value is computed by the same operations as in `topk_row`, and
// comparators of one run share no wire, so the results are `topk_row`'s, bit for bit.
template <typename T>
__device__ void topk_row_network_warp(
    const T* logits, int n, const int4* comparators, int count, const int* layer_starts,
    int layers, int k, const double* rank_weights, double p_first_d, double rest_weight_d,
    int mode, int relaxation, T beta, T lambda, T scale, T* loss_out, T* gradient,
    Strided<T> reals, Strided<unsigned> selection) {
    const int lane = threadIdx.x % WARP_SIZE;
    Strided<T> tape = reals;
    Strided<T> x = reals.offset(4 * count);
    Strided<T> v = x.offset(n);
    Strided<T> selected = v.offset(n);
    Strided<T> probabilities = selected.offset(n);
    const int sorted_label = 0;
    for (int i = lane; i < n; i += WARP_SIZE) {
        selected[i] = logits[selection[i]];
        x[i] = selected[i];
        v[i] = i == sorted_label ? T(1) : T(0);
    }
    __syncwarp();
    for (int layer = 0; layer < layers; ++layer) {
        for (int c = layer_starts[layer] + lane; c < layer_starts[layer + 1]; c += WARP_SIZE)
            forward_comparator(comparators, c, relaxation, beta, lambda, x, v, tape);
        __syncwarp();
    }
    // Mixture, clamp, log (as topk_row).
    T p_first = T(p_first_d);
    T q = T(0);
    for (int rank = 0; rank < k; ++rank) q += T(rank_weights[rank]) * v[n - 1 - rank];
    T log_partition = T(0);
    if (mode != MODE_SORT) {
        T maximum = selected[0];
        for (int i = 1; i < n; ++i) if (selected[i] > maximum) maximum = selected[i];
        for (int i = lane; i < n; i += WARP_SIZE) probabilities[i] = d_exp(selected[i] - maximum);
        __syncwarp();
        T sum = T(0);
        for (int i = 0; i < n; ++i) sum += probabilities[i];
        T inverse = T(1) / sum;
        __syncwarp(); // every lane has read the exponentials before they are scaled
        for (int i = lane; i < n; i += WARP_SIZE) probabilities[i] *= inverse;
        __syncwarp();
        log_partition = maximum + d_log(sum);
    }
    T loss, q_adjoint;
    clamp_and_log(mode, q, p_first, mode == MODE_SOFTMAX ? probabilities[sorted_label] : T(0),
                  log_partition, selected[sorted_label], T(rest_weight_d), &loss, &q_adjoint);
    if (lane == 0) *loss_out = loss;
    if (gradient == 0) return;
    __syncwarp(); // every lane has read v before it becomes the mass adjoint
    for (int i = lane; i < n; i += WARP_SIZE) {
        x[i] = T(0);
        v[i] = T(0);
    }
    __syncwarp();
    if (lane == 0)
        for (int rank = 0; rank < k; ++rank) v[n - 1 - rank] = q_adjoint * T(rank_weights[rank]);
    __syncwarp();
    for (int layer = layers - 1; layer >= 0; --layer) {
        for (int c = layer_starts[layer] + lane; c < layer_starts[layer + 1]; c += WARP_SIZE)
            backward_comparator(comparators, c, x, v, tape);
        __syncwarp();
    }
    add_top1_adjoint(mode, q_adjoint, p_first, probabilities, sorted_label, n, lane, WARP_SIZE, x);
    for (int i = lane; i < n; i += WARP_SIZE) gradient[selection[i]] = x[i] * scale;
}

// The top-k loss of rows with a preselection, fused, one warp per row: `warp_select_row`, then
// lane 0 runs the m selected logits through `topk_row` with the row's scratch in shared memory,
// or, with SWEEP and a sorting network, the whole warp does (`topk_row_network_warp`).
template <typename T, bool SWEEP>
__device__ void topk_loss_warp(
    const T* logits, const unsigned* labels, int batch, int classes, int n,
    const int4* comparators, int count, const int* layer_starts, int layers, int k,
    const double* rank_weights, double p_first,
    double rest_weight, int mode, int family, int relaxation, double beta, double lambda,
    double scale, T* losses, T* gradient, int with_gradient, int* status, unsigned char* shared) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp_in_block = threadIdx.x / WARP_SIZE;
    const int row = blockIdx.x * (blockDim.x / WARP_SIZE) + warp_in_block;
    if (row >= batch) return;
    const T* z = logits + (size_t)row * classes;
    const unsigned label = labels[row];
    const size_t reals_bytes = round_up_8((4 * (size_t)count + (size_t)(5 + k) * n) * sizeof(T));
    const size_t warp_bytes = reals_bytes + round_up_8((size_t)(n + k) * sizeof(unsigned));
    unsigned char* region = shared + warp_in_block * warp_bytes;
    Strided<T> reals{(T*)region, 1};
    Strided<unsigned> selection{(unsigned*)(region + reals_bytes), 1};
    T* row_gradient = with_gradient ? gradient + (size_t)row * classes : (T*)0;
    if (!warp_select_row(z, label, classes, n, row, status, selection, row_gradient)) {
        if (lane == 0) losses[row] = T(0);
        return;
    }
    if (SWEEP && family == FAMILY_NETWORK)
        topk_row_network_warp<T>(z, n, comparators, count, layer_starts, layers, k, rank_weights,
                                 p_first, rest_weight, mode, relaxation, T(beta), T(lambda),
                                 T(scale), losses + row, row_gradient, reals, selection);
    else if (lane == 0)
        topk_row<T>(z, label, classes, n, comparators, count, k, rank_weights, p_first,
                    rest_weight, mode, PRESELECT_DONE, family, relaxation, T(beta), T(lambda),
                    T(scale), losses + row, row_gradient, reals, selection);
}

// The preselection alone, one warp per row, into the one-thread-per-row kernel's index scratch
// (interleaved across rows); a bad row's first index becomes BAD_ROW, which that kernel, run
// next with PRESELECT_DONE, skips. Large batches take this pair of kernels: the selection reads
// rows coalesced, and the row code then keeps all 32 lanes of each warp busy.
#define TOPK_SELECT_WARP_KERNEL(NAME, T)                                                           \
    extern "C" __global__ void NAME(const T* logits, const unsigned* labels, int batch,            \
                                    int classes, int n, T* gradient, int with_gradient,            \
                                    unsigned* indices, int* status) {                              \
        const int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;           \
        if (row >= batch) return;                                                                  \
        Strided<unsigned> selection{indices + row, (size_t)batch};                                 \
        if (!warp_select_row(logits + (size_t)row * classes, labels[row], classes, n, row, status, \
                             selection,                                                            \
                             with_gradient ? gradient + (size_t)row * classes : (T*)0) &&          \
            threadIdx.x % WARP_SIZE == 0)                                                          \
            selection[0] = BAD_ROW;                                                                \
    }

TOPK_SELECT_WARP_KERNEL(topk_select_warp_f32, float)
TOPK_SELECT_WARP_KERNEL(topk_select_warp_f64, double)

#define TOPK_LOSS_WARP_KERNEL(NAME, T, SWEEP)                                                      \
    extern "C" __global__ void NAME(TOPK_LOSS_PARAMETERS(T)) {                                     \
        extern __shared__ double warp_scratch[];                                                   \
        topk_loss_warp<T, SWEEP>(logits, labels, batch, classes, n, comparators, count,            \
                                 layer_starts, layers, k, rank_weights, p_first, rest_weight,      \
                                 mode, family, relaxation, beta, lambda, scale, losses, gradient,  \
                                 with_gradient, status, (unsigned char*)warp_scratch);             \
    }

TOPK_LOSS_WARP_KERNEL(topk_loss_warp_f32, float, false)
TOPK_LOSS_WARP_KERNEL(topk_loss_warp_f64, double, false)
TOPK_LOSS_WARP_KERNEL(topk_loss_warp_sweep_f32, float, true)
TOPK_LOSS_WARP_KERNEL(topk_loss_warp_sweep_f64, double, true)

// Plain softmax cross-entropy, one warp per row: loss_b = log Σ exp(s − max) + max − s_y,
// gradient (softmax − e_y) · scale. One pass for the checks and the maximum, one for the sum,
// one for the gradient; each a coalesced sweep of the row.
template <typename T>
__device__ void softmax_cross_entropy_warp(const T* logits, const unsigned* labels, int batch,
                                           int classes, double scale, T* losses, T* gradient,
                                           int with_gradient, int* status) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    if (row >= batch) return;
    const T* z = logits + (size_t)row * classes;
    const unsigned y = labels[row];
    if (y >= (unsigned)classes) {
        if (lane == 0) {
            atomicMin(status, row);
            losses[row] = T(0);
        }
        return;
    }
    bool finite = true;
    T maximum = z[0];
    for (int j = lane; j < classes; j += WARP_SIZE) {
        T value = z[j];
        finite = finite && isfinite(value);
        if (value > maximum) maximum = value;
    }
    if (__any_sync(ALL_LANES, !finite)) {
        if (lane == 0) {
            atomicMin(status + 1, row);
            losses[row] = T(0);
        }
        return;
    }
    maximum = warp_maximum(maximum);
    T sum = T(0);
    for (int j = lane; j < classes; j += WARP_SIZE) sum += d_exp(z[j] - maximum);
    sum = warp_sum(sum);
    if (lane == 0) losses[row] = maximum + d_log(sum) - z[y];
    if (!with_gradient) return;
    T* g = gradient + (size_t)row * classes;
    T inverse = T(scale) / sum;
    for (int j = lane; j < classes; j += WARP_SIZE) {
        T value = d_exp(z[j] - maximum) * inverse;
        g[j] = j == (int)y ? value - T(scale) : value;
    }
}

#define SOFTMAX_CE_KERNEL(NAME, T)                                                                 \
    extern "C" __global__ void NAME(const T* logits, const unsigned* labels, int batch,            \
                                    int classes, double scale, T* losses, T* gradient,             \
                                    int with_gradient, int* status) {                              \
        softmax_cross_entropy_warp<T>(logits, labels, batch, classes, scale, losses, gradient,     \
                                      with_gradient, status);                                      \
    }

SOFTMAX_CE_KERNEL(softmax_cross_entropy_f32, float)
SOFTMAX_CE_KERNEL(softmax_cross_entropy_f64, double)

// ---------------------------------------------------------------------------------------------
// The relaxed top-k matrix operator (difftopk's DiffTopkNet), one thread per row, the core's
// `operators::relaxed_topk` and `relaxed_topk_backward` step for step:
//   forward   values through the network recording (α, f', f'(a − b)) per comparator, then
//             P_topk = L_1 ⋯ L_D E_k accumulated right to left (n × k per row, row-major, in
//             `p_topk`; P_topk[i, r] is the weight of input i at ascending position n − k + r);
//   backward  the same, recording P_l[o_min, :] − P_l[o_max, :] per comparator, then the adjoint
//             pushed left to right giving ᾱ per comparator, then the reverse value sweep.
// Scratch per row, interleaved across rows: forward 3·C + n reals; backward 4·C + C·k + n·k + n.

template <typename T>
__device__ void record_values(const T* x, int n, const int4* comparators, int count, int relaxation,
                              T beta, T lambda, Strided<T> values, Strided<T> tape) {
    for (int i = 0; i < n; ++i) values[i] = x[i];
    for (int c = 0; c < count; ++c) {
        int4 comparator = comparators[c];
        T a = values[comparator.x], b = values[comparator.y];
        T alpha, slope;
        alpha_and_slope(relaxation, b - a, beta, lambda, &alpha, &slope);
        T one_minus = T(1) - alpha;
        values[comparator.z] = alpha * a + one_minus * b;
        values[comparator.w] = one_minus * a + alpha * b;
        tape[3 * c] = alpha;
        tape[3 * c + 1] = slope;
        tape[3 * c + 2] = slope * (a - b);
    }
}

// P_topk (n × k, through the accessor `P`) from the recorded α's; with `record_differences`,
// `differences[c·k + r]` = P_l[o_min, r] − P_l[o_max, r].
template <typename T, typename Matrix>
__device__ void accumulate_topk(const int4* comparators, int count, int n, int k, Strided<T> tape,
                                Matrix p, bool record_differences, Strided<T> differences) {
    for (int i = 0; i < n * k; ++i) p[i] = T(0);
    for (int r = 0; r < k; ++r) p[(n - k + r) * k + r] = T(1);
    for (int c = count - 1; c >= 0; --c) {
        int4 comparator = comparators[c];
        T alpha = tape[3 * c];
        T one_minus = T(1) - alpha;
        for (int r = 0; r < k; ++r) {
            T low = p[comparator.z * k + r], high = p[comparator.w * k + r];
            if (record_differences) differences[c * k + r] = low - high;
            p[comparator.x * k + r] = alpha * low + one_minus * high;
            p[comparator.y * k + r] = one_minus * low + alpha * high;
        }
    }
}

// Checks a row of x; records the first row with a value out of range in status[1].
template <typename T> __device__ bool values_are_finite(const T* x, int n, int row, int* status) {
    for (int i = 0; i < n; ++i) {
        if (!in_loss_range(x[i])) {
            atomicMin(status + 1, row);
            return false;
        }
    }
    return true;
}

#define TOPK_MATRIX_KERNELS(SUFFIX, T)                                                             \
    extern "C" __global__ void topk_matrix_forward_##SUFFIX(                                       \
        const T* x, int batch, int n, const int4* comparators, int count, int k, int relaxation,   \
        double beta, double lambda, T* p_topk, T* reals, int* status) {                            \
        int row = blockIdx.x * blockDim.x + threadIdx.x;                                           \
        if (row >= batch) return;                                                                  \
        const T* x_row = x + (size_t)row * n;                                                      \
        T* p_row = p_topk + (size_t)row * n * k;                                                   \
        if (!values_are_finite(x_row, n, row, status)) return;                                     \
        Strided<T> tape{reals + row, (size_t)batch};                                               \
        Strided<T> values = tape.offset(3 * count);                                                \
        record_values(x_row, n, comparators, count, relaxation, T(beta), T(lambda), values, tape); \
        accumulate_topk(comparators, count, n, k, tape, p_row, false, values);                     \
    }                                                                                              \
    extern "C" __global__ void topk_matrix_backward_##SUFFIX(                                      \
        const T* x, const T* grad_p_topk, int batch, int n, const int4* comparators, int count,    \
        int k, int relaxation, double beta, double lambda, T* grad_x, T* reals, int* status) {     \
        int row = blockIdx.x * blockDim.x + threadIdx.x;                                           \
        if (row >= batch) return;                                                                  \
        const T* x_row = x + (size_t)row * n;                                                      \
        const T* g_row = grad_p_topk + (size_t)row * n * k;                                        \
        T* gx = grad_x + (size_t)row * n;                                                          \
        if (!values_are_finite(x_row, n, row, status)) return;                                     \
        Strided<T> tape{reals + row, (size_t)batch};                                               \
        Strided<T> alpha_bar = tape.offset(3 * count);                                             \
        Strided<T> differences = alpha_bar.offset(count);                                          \
        Strided<T> adjoint = differences.offset(count * k);                                        \
        Strided<T> values = adjoint.offset(n * k);                                                 \
        record_values(x_row, n, comparators, count, relaxation, T(beta), T(lambda), values, tape); \
        accumulate_topk(comparators, count, n, k, tape, adjoint, true, differences);               \
        for (int i = 0; i < n * k; ++i) adjoint[i] = g_row[i];                                     \
        for (int c = 0; c < count; ++c) {                                                          \
            int4 comparator = comparators[c];                                                      \
            T alpha = tape[3 * c];                                                                 \
            T one_minus = T(1) - alpha;                                                            \
            T sum = T(0);                                                                          \
            for (int r = 0; r < k; ++r) {                                                          \
                T ha = adjoint[comparator.x * k + r], hb = adjoint[comparator.y * k + r];          \
                sum += (ha - hb) * differences[c * k + r];                                         \
                adjoint[comparator.z * k + r] = alpha * ha + one_minus * hb;                       \
                adjoint[comparator.w * k + r] = one_minus * ha + alpha * hb;                       \
            }                                                                                      \
            alpha_bar[c] = sum;                                                                    \
        }                                                                                          \
        for (int i = 0; i < n; ++i) gx[i] = T(0);                                                  \
        for (int c = count - 1; c >= 0; --c) {                                                     \
            int4 comparator = comparators[c];                                                      \
            T alpha = tape[3 * c], slope = tape[3 * c + 1], sloped = tape[3 * c + 2];              \
            T one_minus = T(1) - alpha;                                                            \
            T gmin = gx[comparator.z], gmax = gx[comparator.w];                                    \
            T through = sloped * (gmin - gmax) + slope * alpha_bar[c];                             \
            T through_alpha = slope == T(0) ? T(0) : through;                                      \
            gx[comparator.x] = alpha * gmin + one_minus * gmax - through_alpha;                    \
            gx[comparator.y] = one_minus * gmin + alpha * gmax + through_alpha;                    \
        }                                                                                          \
    }

TOPK_MATRIX_KERNELS(f32, float)
TOPK_MATRIX_KERNELS(f64, double)
