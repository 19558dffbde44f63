// Runs the CUDA kernels of gpu/kernels/topk_loss.cu on the CPU, one "thread" (row) after
// another, or for the one-warp-per-row kernels 32 threads a warp (below), so that their
// arithmetic is checked against the core on machines without a GPU.
// The CUDA keywords become nothing, the built-ins become their C++ equivalents; the kernel
// source is included unchanged.
//
// Reads cases from stdin until EOF. Losses (kernel 0 top-k one thread per row, 8 top-k one warp
// per row, 9 top-k selection by warps then one thread per row, 10 top-k one warp per row with the
// network swept by the whole warp, 1 cross-entropy by warps):
//   kernel precision(32|64) batch classes n count k mode preselect family relaxation beta lambda
//   p_first rest_weight scale, then 4·max(count,1) comparator ints, k rank weights, batch labels,
//   batch·classes logits; writes the two status flags, batch losses, batch·classes gradient.
// Head kernels (kernel 4 AdamW, 5 column sums, 6 bias broadcast), float32:
//   4 32 count step_size inverse_root_correction keep beta1 beta2 one_minus_beta1
//     one_minus_beta2 epsilon, then count values, gradients, first and second moments;
//     writes the updated values, first and second moments;
//   5 32 rows classes, then rows·classes gradient entries; writes the classes column sums;
//   6 32 rows classes, then classes biases; writes rows·classes logits;
//   7 32 count dimension source_rows, then source_rows·dimension values, source_rows labels,
//     count row indices; writes count·dimension gathered values and count labels.
// Top-k matrix (kernel 2 forward, 3 backward):
//   kernel precision batch n count k relaxation beta lambda, then 4·count comparator ints,
//   batch·n values, and for the backward batch·n·k adjoints of P_topk; writes the status flags
//   and batch·n·k entries of P_topk (forward) or batch·n of ∂/∂x (backward).
#include <climits>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <vector>

#define __device__
#define __global__
#define __shared__
#define __forceinline__ inline
struct int4 { int x, y, z, w; };
struct dim3 { unsigned x, y, z; };
// Each emulated thread has its own built-ins.
static thread_local dim3 blockIdx, blockDim, threadIdx;
static std::mutex atomic_mutex;
static int atomicMin(int* address, int value) {
    std::lock_guard<std::mutex> lock(atomic_mutex);
    int old = *address;
    if (value < old) *address = value;
    return old;
}
using std::isfinite;

// A warp's 32 lanes are 32 threads; a shuffle or vote is a write to the lane's slot, a barrier
// over the warp, a read, and a barrier. Lanes that reach different collectives deadlock, and the
// alarm in main() then fails the run, so divergent collectives cannot pass unnoticed.
struct Warp {
    std::mutex mutex;
    std::condition_variable condition;
    int waiting = 0;
    unsigned long generation = 0;
    unsigned long long slots[32];
    void barrier() {
        std::unique_lock<std::mutex> lock(mutex);
        unsigned long arrived = generation;
        if (++waiting == 32) {
            waiting = 0;
            generation += 1;
            condition.notify_all();
        } else {
            condition.wait(lock, [&] { return generation != arrived; });
        }
    }
};
static thread_local Warp* current_warp;
template <typename T> static T __shfl_xor_sync(unsigned, T value, int lane_mask) {
    static_assert(sizeof(T) <= 8, "one slot per lane");
    int lane = threadIdx.x % 32;
    std::memcpy(&current_warp->slots[lane], &value, sizeof(T));
    current_warp->barrier();
    T other;
    std::memcpy(&other, &current_warp->slots[lane ^ lane_mask], sizeof(T));
    current_warp->barrier();
    return other;
}
static bool __any_sync(unsigned, bool predicate) {
    int lane = threadIdx.x % 32;
    current_warp->slots[lane] = predicate ? 1 : 0;
    current_warp->barrier();
    bool any = false;
    for (int other = 0; other < 32; ++other) any = any || current_warp->slots[other] != 0;
    current_warp->barrier();
    return any;
}
static void __syncwarp(unsigned = 0xffffffffu) { current_warp->barrier(); }

#include "../../kernels/topk_loss.cu"
#include "../../kernels/head.cu"

// The dynamic shared memory of the block being run (one block at a time): 1 MiB, more than a
// device block gets, so that the test can also run rows whose scratch the host would keep out
// of shared memory (m = 70: runs of independent comparators wider than a warp).
double warp_scratch[1 << 17];

// Runs a one-warp-per-row kernel over `rows` rows: blocks of two warps (so that the kernel's
// per-warp offsets into shared memory are exercised), each lane a thread.
template <typename Kernel> static void each_warp(int rows, Kernel kernel) {
    const unsigned lanes = 64;
    for (int block = 0; block < (rows + 1) / 2; ++block) {
        std::vector<Warp> warps(2);
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < lanes; ++t)
            threads.emplace_back([&, t] {
                blockIdx = dim3{(unsigned)block, 0, 0};
                blockDim = dim3{lanes, 1, 1};
                threadIdx = dim3{t, 0, 0};
                current_warp = &warps[t / 32];
                kernel();
            });
        for (auto& thread : threads) thread.join();
    }
}

template <typename T> static bool read(T* value);
template <> bool read(int* value) { return std::scanf("%d", value) == 1; }
template <> bool read(unsigned* value) { return std::scanf("%u", value) == 1; }
template <> bool read(double* value) { return std::scanf("%lf", value) == 1; }

// Where the runs of mutually independent comparators start, then `count`: the host's
// `independent_runs` (gpu/src/device.rs), so that the warp sweep sees what the device gets.
static std::vector<int> independent_runs(const std::vector<int4>& comparators, int count) {
    std::vector<int> starts{0};
    std::vector<int> touched_in;
    int run = 1;
    for (int c = 0; c < count; ++c) {
        const int wires[4] = {comparators[c].x, comparators[c].y, comparators[c].z, comparators[c].w};
        bool shared = false;
        for (int wire : wires) {
            if ((int)touched_in.size() <= wire) touched_in.resize(wire + 1, 0);
            shared = shared || touched_in[wire] == run;
        }
        if (shared) {
            starts.push_back(c);
            run += 1;
        }
        for (int wire : wires) touched_in[wire] = run;
    }
    if (count > 0) starts.push_back(count);
    return starts;
}

template <typename T>
static void run_case(int kernel, int batch, int classes, int n, int count, int k, int mode,
                     int preselect, int family, int relaxation, double beta, double lambda,
                     double p_first, double rest_weight, double scale) {
    std::vector<int4> comparators(count > 0 ? count : 1);
    for (auto& c : comparators) { read(&c.x); read(&c.y); read(&c.z); read(&c.w); }
    const std::vector<int> layer_starts = independent_runs(comparators, count);
    const int layers = (int)layer_starts.size() - 1;
    std::vector<double> rank_weights(k > 0 ? k : 1);
    for (int i = 0; i < k; ++i) read(&rank_weights[i]);
    std::vector<unsigned> labels(batch);
    for (auto& label : labels) read(&label);
    std::vector<T> logits((size_t)batch * classes);
    for (auto& value : logits) { double v; read(&v); value = (T)v; }
    std::vector<T> losses(batch), gradient((size_t)batch * classes, T(0));
    std::vector<T> reals((size_t)batch * (4 * (size_t)count + (size_t)(5 + k) * n) + 1);
    std::vector<unsigned> indices((size_t)batch * (n + k) + 1);
    int status[2] = {INT_MAX, INT_MAX};
    if (kernel == 1) {
        each_warp(batch, [&] {
            if (sizeof(T) == 4)
                softmax_cross_entropy_f32((const float*)logits.data(), labels.data(), batch, classes, scale,
                                          (float*)losses.data(), (float*)gradient.data(), 1, status);
            else
                softmax_cross_entropy_f64((const double*)logits.data(), labels.data(), batch, classes, scale,
                                          (double*)losses.data(), (double*)gradient.data(), 1, status);
        });
    } else if (kernel == 8 || kernel == 10) {
        auto f32 = kernel == 8 ? topk_loss_warp_f32 : topk_loss_warp_sweep_f32;
        auto f64 = kernel == 8 ? topk_loss_warp_f64 : topk_loss_warp_sweep_f64;
        each_warp(batch, [&] {
            if (sizeof(T) == 4)
                f32((const float*)logits.data(), labels.data(), batch, classes, n, comparators.data(), count,
                    layer_starts.data(), layers, k, rank_weights.data(), p_first, rest_weight, mode, preselect,
                    family, relaxation, beta, lambda, scale, (float*)losses.data(), (float*)gradient.data(), 1,
                    (float*)reals.data(), indices.data(), status);
            else
                f64((const double*)logits.data(), labels.data(), batch, classes, n, comparators.data(), count,
                    layer_starts.data(), layers, k, rank_weights.data(), p_first, rest_weight, mode, preselect,
                    family, relaxation, beta, lambda, scale, (double*)losses.data(), (double*)gradient.data(),
                    1, (double*)reals.data(), indices.data(), status);
        });
    } else {
        if (kernel == 9) { // the selection by warps, then one thread per row on it
            each_warp(batch, [&] {
                if (sizeof(T) == 4)
                    topk_select_warp_f32((const float*)logits.data(), labels.data(), batch, classes, n,
                                         (float*)gradient.data(), 1, indices.data(), status);
                else
                    topk_select_warp_f64((const double*)logits.data(), labels.data(), batch, classes, n,
                                         (double*)gradient.data(), 1, indices.data(), status);
            });
            preselect = PRESELECT_DONE;
        }
        blockDim = dim3{1, 1, 1};
        threadIdx = dim3{0, 0, 0};
        for (int row = 0; row < batch; ++row) {
            blockIdx = dim3{(unsigned)row, 0, 0};
            if (sizeof(T) == 4) {
                topk_loss_f32((const float*)logits.data(), labels.data(), batch, classes, n, comparators.data(),
                              count, layer_starts.data(), layers, k, rank_weights.data(), p_first, rest_weight, mode, preselect, family,
                              relaxation, beta, lambda, scale, (float*)losses.data(), (float*)gradient.data(), 1,
                              (float*)reals.data(), indices.data(), status);
            } else {
                topk_loss_f64((const double*)logits.data(), labels.data(), batch, classes, n, comparators.data(),
                              count, layer_starts.data(), layers, k, rank_weights.data(), p_first, rest_weight, mode, preselect, family,
                              relaxation, beta, lambda, scale, (double*)losses.data(), (double*)gradient.data(), 1,
                              (double*)reals.data(), indices.data(), status);
            }
        }
    }
    std::printf("%d %d\n", status[0], status[1]);
    for (auto value : losses) std::printf("%.17g\n", (double)value);
    for (auto value : gradient) std::printf("%.17g\n", (double)value);
}

template <typename T>
static void run_matrix_case(int kernel, int batch, int n, int count, int k, int relaxation,
                            double beta, double lambda) {
    std::vector<int4> comparators(count > 0 ? count : 1);
    for (int c = 0; c < count; ++c) {
        read(&comparators[c].x); read(&comparators[c].y); read(&comparators[c].z); read(&comparators[c].w);
    }
    std::vector<T> x((size_t)batch * n);
    for (auto& value : x) { double v; read(&v); value = (T)v; }
    std::vector<T> adjoint;
    if (kernel == 3) {
        adjoint.resize((size_t)batch * n * k);
        for (auto& value : adjoint) { double v; read(&v); value = (T)v; }
    }
    size_t per_row = 4 * (size_t)count + (size_t)count * k + (size_t)n * k + n;
    std::vector<T> reals((size_t)batch * per_row + 1);
    std::vector<T> out(kernel == 2 ? (size_t)batch * n * k : (size_t)batch * n, T(0));
    int status[2] = {INT_MAX, INT_MAX};
    blockDim = dim3{1, 1, 1};
    threadIdx = dim3{0, 0, 0};
    for (int row = 0; row < batch; ++row) {
        blockIdx = dim3{(unsigned)row, 0, 0};
        if (kernel == 2) {
            if (sizeof(T) == 4)
                topk_matrix_forward_f32((const float*)x.data(), batch, n, comparators.data(), count, k, relaxation,
                                        beta, lambda, (float*)out.data(), (float*)reals.data(), status);
            else
                topk_matrix_forward_f64((const double*)x.data(), batch, n, comparators.data(), count, k, relaxation,
                                        beta, lambda, (double*)out.data(), (double*)reals.data(), status);
        } else if (sizeof(T) == 4) {
            topk_matrix_backward_f32((const float*)x.data(), (const float*)adjoint.data(), batch, n,
                                     comparators.data(), count, k, relaxation, beta, lambda, (float*)out.data(),
                                     (float*)reals.data(), status);
        } else {
            topk_matrix_backward_f64((const double*)x.data(), (const double*)adjoint.data(), batch, n,
                                     comparators.data(), count, k, relaxation, beta, lambda, (double*)out.data(),
                                     (double*)reals.data(), status);
        }
    }
    std::printf("%d %d\n", status[0], status[1]);
    for (auto value : out) std::printf("%.17g\n", (double)value);
}

static std::vector<float> read_floats(size_t count) {
    std::vector<float> out(count);
    for (auto& value : out) { double v; read(&v); value = (float)v; }
    return out;
}

// Runs a head kernel over `threads` threads, one block of one thread each.
template <typename Kernel> static void each_thread(size_t threads, Kernel kernel) {
    blockDim = dim3{1, 1, 1};
    threadIdx = dim3{0, 0, 0};
    for (size_t t = 0; t < threads; ++t) {
        blockIdx = dim3{(unsigned)t, 0, 0};
        kernel();
    }
}

static bool run_head_case(int kernel) {
    if (kernel == 4) {
        long long count;
        double coefficients[8];
        if (std::scanf("%lld", &count) != 1) return false;
        for (double& c : coefficients) read(&c);
        auto values = read_floats(count), gradient = read_floats(count);
        auto first = read_floats(count), second = read_floats(count);
        each_thread(count, [&] {
            adamw_f32(values.data(), gradient.data(), first.data(), second.data(), count,
                      (float)coefficients[0], (float)coefficients[1], (float)coefficients[2],
                      (float)coefficients[3], (float)coefficients[4], (float)coefficients[5],
                      (float)coefficients[6], (float)coefficients[7]);
        });
        for (auto* vector : {&values, &first, &second})
            for (float value : *vector) std::printf("%.9g\n", (double)value);
        return true;
    }
    if (kernel == 7) {
        int count, dimension, source_rows;
        if (!(read(&count) && read(&dimension) && read(&source_rows))) return false;
        auto source = read_floats((size_t)source_rows * dimension);
        std::vector<unsigned> labels(source_rows), rows(count), labels_out(count);
        for (auto& label : labels) read(&label);
        for (auto& row : rows) read(&row);
        std::vector<float> out((size_t)count * dimension);
        each_thread(out.size(), [&] {
            gather_rows_f32(source.data(), labels.data(), rows.data(), count, dimension, out.data(),
                            labels_out.data());
        });
        for (float value : out) std::printf("%.9g\n", (double)value);
        for (unsigned label : labels_out) std::printf("%u\n", label);
        return true;
    }
    int rows, classes;
    if (!(read(&rows) && read(&classes))) return false;
    if (kernel == 5) {
        auto gradient = read_floats((size_t)rows * classes);
        std::vector<float> out(classes);
        each_thread(classes, [&] { column_sums_f32(gradient.data(), rows, classes, out.data()); });
        for (float value : out) std::printf("%.9g\n", (double)value);
    } else {
        auto bias = read_floats(classes);
        std::vector<float> logits((size_t)rows * classes);
        each_thread(logits.size(), [&] { broadcast_bias_f32(logits.data(), bias.data(), rows, classes); });
        for (float value : logits) std::printf("%.9g\n", (double)value);
    }
    return true;
}

int main() {
    alarm(300); // a deadlock among emulated lanes fails the run instead of hanging it
    int kernel, precision, batch, classes, n, count, k, mode, preselect, family, relaxation;
    double beta, lambda, p_first, rest_weight, scale;
    while (read(&kernel) && read(&precision)) {
        if (kernel >= 4 && kernel <= 7) {
            if (!run_head_case(kernel)) return 1;
            continue;
        }
        if (kernel == 2 || kernel == 3) {
            if (!(read(&batch) && read(&n) && read(&count) && read(&k) && read(&relaxation) &&
                  read(&beta) && read(&lambda)))
                return 1;
            if (precision == 32)
                run_matrix_case<float>(kernel, batch, n, count, k, relaxation, beta, lambda);
            else
                run_matrix_case<double>(kernel, batch, n, count, k, relaxation, beta, lambda);
            continue;
        }
        if (!(read(&batch) && read(&classes) && read(&n) && read(&count) && read(&k) && read(&mode) &&
              read(&preselect) && read(&family) && read(&relaxation) && read(&beta) && read(&lambda) &&
              read(&p_first) && read(&rest_weight) && read(&scale)))
            return 1;
        if (precision == 32)
            run_case<float>(kernel, batch, classes, n, count, k, mode, preselect, family, relaxation, beta,
                            lambda, p_first, rest_weight, scale);
        else
            run_case<double>(kernel, batch, classes, n, count, k, mode, preselect, family, relaxation, beta,
                             lambda, p_first, rest_weight, scale);
    }
    return 0;
}
