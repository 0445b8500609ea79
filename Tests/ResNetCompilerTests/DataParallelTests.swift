import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Data-parallel training through NAME_set_allreduce, in one process:
/// Tests/Drivers/data_parallel.c trains R replicas in R threads, each on its
/// shard, with an in-memory all-reduce, beside one model on the whole batch.
///
/// The replicas end with the whole-batch model's bits: the BN sums, the loss
/// and the gradients cross replicas exactly (runtime.c: each value as an
/// integer multiple of 2^(E−62) in 16-bit pieces that floats add without
/// rounding; a gradient with the two floats its rounding lost), each kernel
/// sums its images in the order one model does (weight-gradient partials
/// grouped by the global batch), so every sum rounds to the float one model
/// gets. That is what makes "the same step" hold after five steps: in
/// float32 the step itself is ill-conditioned (a BN bias's gradient is the Σ
/// of a ReLU-masked gradient whose mean a batch norm just removed), and any
/// other order of summation drifts — measured on ResNet-20, 2 × 16 images, lr
/// 0.05: with the gradients summed as floats across replicas the five-step
/// losses differed by 3.5–7.6e-5 and a BN bias by 4%; PyTorch's own float32
/// run is 2.2% from float64 on that tensor. The relative differences are
/// still computed and printed, and held to the issue's 1e-5.
@Suite(.temporaryFiles) struct DataParallelTests {
    struct Run {
        var losses: [(whole: Double, replicas: [Double])] = []
        var lines: [String] = []
        var whole: [String: SafeTensors.Tensor] = [:]
        var replica: [String: SafeTensors.Tensor] = [:]
    }

    /// Runs the driver (under `launcher`, e.g. mpirun, when given) for `steps` steps.
    static func train(_ exe: String, replicas: Int, batch: Int, steps: Int, in directory: String,
                      launcher: [String]? = nil) throws -> Run {
        let dir = directory + "/r\(replicas)s\(steps)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let args = [String(batch), String(steps), dir]
        let r = try launcher.map { try HostTools.run($0[0], Array($0.dropFirst()) + [exe] + args, environment: ["OMP_NUM_THREADS": "1"]) }
            ?? HostTools.run(exe, [String(replicas)] + args, environment: ["OMP_NUM_THREADS": "1"])
        #expect(r.status == 0, "\(r.output)")
        var run = Run(lines: r.output.split(separator: "\n").map(String.init))
        for line in run.lines where line.hasPrefix("step ") {
            let f = line.split(separator: " ")
            run.losses.append((Double(f[3])!, f[5...].map { Double($0)! }))
        }
        #expect(run.losses.count == steps, "\(r.output)")
        run.whole = try SafeTensors.read(dir + "/whole.safetensors")
        run.replica = try SafeTensors.read(dir + "/replica0.safetensors")
        return run
    }

    /// Per tensor: max |replica − whole| / max |whole| (running statistics included).
    static func relative(_ run: Run) -> [(String, Double)] {
        run.whole.keys.sorted().compactMap { name in
            guard let w = run.whole[name], w.dtype == "F32", let r = run.replica[name] else { return nil }
            let a = w.floats, b = r.floats
            let scale = a.map { abs(Double($0)) }.max() ?? 0
            let diff = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            return (name, scale > 0 ? diff / scale : diff)
        }
    }

    /// ‖replica − whole‖₂ / ‖whole‖₂ over the whole state dict.
    static func globalRelative(_ run: Run) -> Double {
        var d = 0.0, s = 0.0
        for (name, w) in run.whole where w.dtype == "F32" {
            for (a, b) in zip(w.floats, run.replica[name]!.floats) {
                d += (Double(a) - Double(b)) * (Double(a) - Double(b))
                s += Double(a) * Double(a)
            }
        }
        return (d / s).squareRoot()
    }

    /// ResNet-20 (blocked kernels), the mixnet (max pool, a bottleneck with a
    /// projection shortcut, option A) fused, and unfused (the scalar NCHW
    /// batch-norm kernels).
    /// ResNet-20 also on the AVX2 and portable paths (each kernel family
    /// has its own vector code there), where this CPU runs them.
    @Test(arguments: [("resnet20", 2, 16, true, "native"), ("resnet20", 3, 8, true, "native"), ("resnet20", 2, 16, true, "avx2"),
                      ("resnet20", 2, 16, true, "portable"), ("mixnet", 2, 6, true, "native"), ("mixnet", 3, 4, true, "native"),
                      ("mixnet", 2, 6, false, "native")])
    func replicasTakeTheWholeBatchStep(network: String, replicas: Int, batch: Int, fuse: Bool, isa: String) throws {
        guard let variant = ISA.variants.first(where: { $0.name == isa }) else {
            print("data parallel: no \(isa) path on this CPU (\(ISA.avx2SkipReason ?? "")), skipped")
            return
        }
        let spec = network == "mixnet" ? TestNetworks.mixnet() : try ResNet.cifar(depth: 20).spec
        let (dir, _) = try CBuild.generate(spec, fuse: fuse)
        let cc = CBuild.toolchains.first(where: \.openMP)?.cc ?? CBuild.standard.cc
        let toolchain = variant.toolchain(cc: cc, openMP: ISA.hasOpenMP(cc))
        let exe = dir + "/data_parallel"
        try CBuild.compile([CBuild.root + "/Tests/Drivers/data_parallel.c", dir + "/\(spec.name).c"], output: exe,
                           toolchain: toolchain,
                           extra: ["-pthread", "-I", dir, "-DNET=\(spec.name)", "-DUNET=\(spec.name.uppercased())",
                                   "-DNET_HEADER=\"\(spec.name).h\""])

        try Self.check(exe, network: network + (fuse ? "" : " unfused"), replicas: replicas, batch: batch, in: dir,
                       label: "\(toolchain) \(isa)")
    }

    /// The one-step and five-step comparisons (see the type's comment).
    static func check(_ exe: String, network: String, replicas: Int, batch: Int, in dir: String, label: String,
                      launcher: [String]? = nil) throws {
        var report: [String] = [], calls = ""
        for steps in [1, 5] {
            let run = try Self.train(exe, replicas: replicas, batch: batch, steps: steps, in: dir, launcher: launcher)
            if steps == 1 { calls = run.lines.first { $0.hasPrefix("hook calls") } ?? "" }
            var lines = ["replicas identical: yes", "replicas have the whole batch's bits: yes"]
            if steps == 1 { lines += ["weights unchanged: yes", "alone again: yes"] }
            for line in lines {
                #expect(run.lines.contains { $0.contains(line) }, "after \(steps) step(s): \(line) missing: \(run.lines)")
            }
            for (whole, reps) in run.losses {
                #expect(reps.allSatisfy { $0 == whole }, "after \(steps) step(s): loss: whole \(whole), replicas \(reps)")
            }
            let worst = Self.relative(run).max { $0.1 < $1.1 }!, global = Self.globalRelative(run)
            #expect(worst.1 <= 1e-5 && global <= 1e-5,
                    "after \(steps) step(s), \(worst.0) differs by \(worst.1) of its scale; the state dict by \(global) (L2)")
            report.append("\(steps) step(s): worst \(worst.0) \(worst.1), state dict L2 \(global)")
        }
        print("data parallel \(network) R=\(replicas) × \(batch) [\(label)]: " + report.joined(separator: "; ") + "; " + calls)
    }

    // MARK: MPI

    /// OpenMPI's compiler wrapper and launcher (`make deps` installs them), or nil.
    static let mpi: (cc: String, run: String)? = {
        guard let cc = HostTools.which("mpicc"), let run = HostTools.which("mpirun") else { return nil }
        return (cc, run)
    }()
    static let mpiRuns = mpi != nil || ISA.inCI

    /// The same comparison with real processes: two ranks under `mpirun` on
    /// this machine (loopback), the hook MPI_Allreduce in place.
    @Test(.enabled(if: mpiRuns, "OpenMPI (mpicc, mpirun) missing: make deps installs openmpi-bin and libopenmpi-dev"))
    func ranksUnderMPITakeTheWholeBatchStep() throws {
        let mpi = try #require(Self.mpi, "OpenMPI (mpicc, mpirun) missing (CI=true)")
        let spec = TestNetworks.mixnet()
        let (dir, _) = try CBuild.generate(spec)
        let exe = dir + "/data_parallel_mpi"
        try CBuild.compile([CBuild.root + "/Tests/Drivers/data_parallel.c", dir + "/\(spec.name).c"], output: exe,
                           toolchain: CBuild.Toolchain(cc: mpi.cc, openMP: false),
                           extra: ["-DDP_MPI", "-I", dir, "-DNET=\(spec.name)", "-DUNET=\(spec.name.uppercased())",
                                   "-DNET_HEADER=\"\(spec.name).h\""])
        // Root may run it (containers); more ranks than cores is fine; shared memory between them.
        let launcher = [mpi.run, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2"]
        try Self.check(exe, network: "mixnet", replicas: 2, batch: 6, in: dir, label: "mpirun -np 2", launcher: launcher)
    }
}
