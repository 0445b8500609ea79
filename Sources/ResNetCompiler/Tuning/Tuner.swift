import Foundation
import ResNetDSL

/// `--tune`: measures the candidate schedules of each distinct vector conv of
/// a network on this machine, with the C compiler the user names, and records
/// the fastest in a `TuneCache`.
///
/// A conv is measured inside a small network of its own shape (a 1×1 conv in
/// front when the real one reads a blocked tensor, so the measured kernel is
/// the same kernel; then its batch norm and ReLU, the pool and a 2-way
/// classifier), compiled once per candidate with that candidate forced,
/// built with `cc -O3 -march=native -fopenmp`, and timed at `batch` images
/// with `threads` OpenMP threads: the best of five runs of at least 0.1 s.
/// The rest of the probe network is the same for every candidate, so the
/// fastest probe has the fastest conv. Only the inference graph's convs are
/// measured; the training step takes their choices for the same shapes, and
/// the cost model's for its data gradients.
public struct Tuner {
    public var cc: String
    public var threads: Int
    public var batch: Int
    public var templates: Templates
    public var log: (String) -> Void = { _ in }

    public init(cc: String, threads: Int, batch: Int = 8, templates: Templates) {
        self.cc = cc
        self.threads = threads
        self.batch = batch
        self.templates = templates
    }

    /// Flags the probes are built with (the README's recommended ones).
    var flags: [String] { ["-std=c11", "-O3", "-march=native"] + (HostTools.openMPFlags(for: cc) ?? []) }

    /// The target a cache entry is for: the vector ISA `cc -O3 -march=native`
    /// selects (the vector helpers' RC_VEC_ISA) and the thread count.
    public func target() throws -> String {
        try withScratch { dir in
            let helpers = try templates.render("vector.c", [String: Any]())
            let probe = """
            #include <stdio.h>
            #include <stddef.h>
            #include <math.h>
            #define RC_OMP(directive)
            #define RC_RESTRICT
            \(helpers)
            int main(void) { puts(RC_VEC_ISA); return 0; }
            """
            try Data(probe.utf8).write(to: URL(fileURLWithPath: dir + "/isa.c"))
            try build([dir + "/isa.c"], output: dir + "/isa")
            let r = try HostTools.run(dir + "/isa", [])
            guard r.status == 0 else { throw CompileError("--tune: the ISA probe built with \(cc) failed: \(r.output)") }
            return r.output.trimmingCharacters(in: .whitespacesAndNewlines) + "|\(threads)t"
        }
    }

    /// Measures every vector conv of `spec` that `cache` has no entry for at
    /// `target`; returns how many were measured.
    @discardableResult
    public func tune(_ spec: NetworkSpec, options: Pipeline.Options, cache: inout TuneCache, target: String) throws -> Int {
        try tune(lowered: try Lower.lower(spec), options: options, cache: &cache, target: target)
    }

    /// The same for a graph already in the IR (an imported ONNX model).
    @discardableResult
    public func tune(lowered: Graph, options: Pipeline.Options, cache: inout TuneCache, target: String) throws -> Int {
        let graph = try Pipeline.inference(Pipeline.Options(fuse: options.fuse)).run(lowered)
        var seen = Set<String>()
        var measured = 0
        let convs = graph.nodes.filter { Schedule.tuneKey($0, graph) != nil }
        for node in convs {
            let key = Schedule.tuneKey(node, graph)!
            guard seen.insert(key).inserted, cache.entries[key + "|" + target] == nil else { continue }
            let probe = try probeNetwork(node, graph)
            let probeGraph = try Pipeline.inference().run(try Lower.lower(probe))
            guard let probeNode = probeGraph.nodes.first(where: { Schedule.tuneKey($0, probeGraph) == key }) else {
                log("tune: \(key): the probe network does not reproduce it; skipped")
                continue
            }
            var best: TuneCache.Choice?
            for var candidate in Schedule.candidates(probeNode, probeGraph) {
                let seconds = try time(probe, forcing: [key: candidate])
                log("tune: \(key): \(candidate) — \(String(format: "%.3f", seconds * 1e3)) ms")
                candidate.seconds = seconds
                if best == nil || seconds < best!.seconds! { best = candidate }
            }
            if let best {
                cache.entries[key + "|" + target] = best
                log("tune: \(key) → \(best)")
                measured += 1
            }
        }
        return measured
    }

    /// A network of one conv of `node`'s shape (see the type's comment).
    func probeNetwork(_ node: Node, _ g: Graph) throws -> NetworkSpec {
        let x = g.shape(node.inputs[0]), out = node.shape!, a = node.attrs
        let blockedInput = g.layout(node.inputs[0]) != .plain
        let network = Network("tune", input: .image(channels: x.c, height: x.h, width: x.w)) {
            if blockedInput {
                Conv2D(x.c, kernel: 1, name: "pre")
                BatchNorm(name: "pre_bn")
                ReLU()
            }
            Conv2D(out.c, kernel: a.kernel!, stride: a.stride!, padding: a.padding!, name: "conv")
            BatchNorm(name: "bn")
            ReLU()
            GlobalAvgPool()
            Dense(2, name: "fc")
            Softmax()
        }
        return network.spec
    }

    /// Seconds per inference call of `spec` at `batch` with `choices` forced.
    func time(_ spec: NetworkSpec, forcing choices: [String: TuneCache.Choice]) throws -> Double {
        try withScratch { dir in
            let compiler = try Compiler(templates: templates, options: Pipeline.Options(choices: choices))
            let artifacts = try compiler.compile(spec)
            try AtomicWriter.write(artifacts.files, to: dir)
            try Data(Self.harness.utf8).write(to: URL(fileURLWithPath: dir + "/time.c"))
            try build([dir + "/time.c", dir + "/tune.c", "-I", dir, "-lm"], output: dir + "/time")
            let r = try HostTools.run(dir + "/time", [String(batch)], environment: ["OMP_NUM_THREADS": String(threads)])
            guard r.status == 0, let seconds = Double(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw CompileError("--tune: the probe failed: \(r.output)")
            }
            return seconds
        }
    }

    func build(_ sources: [String], output: String) throws {
        // The compiler's own temporaries go into the scratch directory, which is removed on every exit.
        let scratch = (output as NSString).deletingLastPathComponent
        let r = try HostTools.run(cc, flags + sources + ["-o", output], environment: ["TMPDIR": scratch])
        guard r.status == 0 else { throw CompileError("--tune: \(cc) failed:\n\(r.output)") }
    }

    func withScratch<T>(_ body: (String) throws -> T) throws -> T {
        try Cleanup.withTemporaryDirectory("tune", body)
    }

    /// Times tune_infer: prints the best of five runs' seconds per call.
    static let harness = """
    #define _POSIX_C_SOURCE 200809L
    #include "tune.h"
    #include <stdio.h>
    #include <stdlib.h>
    #include <time.h>
    static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec; }
    int main(int argc, char **argv) {
        const int n = argc > 1 ? atoi(argv[1]) : 8;
        tune_model *m = tune_create(n);
        if (!m) return 2;
        const size_t count = (size_t)n * TUNE_INPUT_C * TUNE_INPUT_H * TUNE_INPUT_W;
        float *x = malloc(count * sizeof *x), *p = malloc((size_t)n * TUNE_NUM_CLASSES * sizeof *p);
        if (!x || !p) return 2;
        for (size_t i = 0; i < count; i++) x[i] = (float)(i % 97) / 97.0f - 0.5f;
        for (int w = 0; w < 2; w++) if (tune_infer(m, x, n, p) != 0) return 3;
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            int calls = 0;
            const double t0 = now();
            double t = t0;
            while (t - t0 < 0.1) { tune_infer(m, x, n, p); calls++; t = now(); }
            if ((t - t0) / calls < best) best = (t - t0) / calls;
        }
        printf("%.9f\\n", best);
        tune_destroy(m);
        free(x);
        free(p);
        return 0;
    }
    """
}
