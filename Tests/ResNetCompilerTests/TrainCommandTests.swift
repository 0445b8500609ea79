import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// `resnet-compile train` as a user runs it, on the 8×8 digits in data/.
@Suite(.serialized, .temporaryFiles) struct TrainCommandTests {
    static let model = """
        import ResNetDSL
        let tiny = try ResNet.cifar(depth: 8, name: "tinydigits", input: .image(channels: 1, height: 8, width: 8))
        """

    func train(_ dir: String, _ extra: [String]) throws -> (status: Int32, output: String) {
        try CBuild.run(CLITests.tool, ["train", dir + "/tiny.swift",
                                       "--data", CBuild.root + "/data/digits-train.safetensors",
                                       "--test", CBuild.root + "/data/digits-test.safetensors",
                                       "--batch", "32", "--pad", "1", "--no-flip", "--milestones", "none",
                                       "--print-every", "10", "--eval-every", "40", "-o", dir + "/run"] + extra)
    }

    /// Rows of train.csv (comments skipped) as column → value.
    func log(_ dir: String) throws -> [[String: String]] {
        let lines = try String(contentsOfFile: dir + "/run/train.csv", encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#") }
        let header = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        return lines.dropFirst().map { line in
            Dictionary(uniqueKeysWithValues: zip(header, line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
        }
    }

    @Test func shortRunLowersTheLossAndWritesItsOutputs() throws {
        let dir = try CBuild.temporaryDirectory("train")
        try Self.model.write(toFile: dir + "/tiny.swift", atomically: true, encoding: .utf8)
        let r = try train(dir, ["--iterations", "80"])
        #expect(r.status == 0, "\(r.output)")
        let rows = try log(dir)
        let losses = rows.compactMap { Double($0["loss"] ?? "") }
        #expect(losses.count == 8)
        #expect(losses.last! < 0.6 * losses.first!, "loss did not fall: \(losses)")
        let testError = try #require(Double(rows.last!["test_error"] ?? ""))
        #expect(testError < 40, "test error \(testError)%")
        for file in ["errors.svg", "tinydigits.safetensors", "mean.safetensors", "checkpoint.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/run/" + file), "\(file) missing")
        }
        let svg = try String(contentsOfFile: dir + "/run/errors.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<?xml") || svg.hasPrefix("<svg"))
        #expect(svg.contains("error (%)"))
    }

    /// At a fixed thread count, training gives the same bits run to run, and a
    /// run stopped twice (--stop-at 3, during warm-up; --stop-at 13, between
    /// rows and checkpoints) and resumed ends exactly as one that never
    /// stopped: the weights, the last checkpoint (momentum buffers, step,
    /// running statistics), the mean image, and train.csv and checkpoint.state
    /// but for their timings. The run covers everything a resume must restore:
    /// 84 training images at batch 16 cross an epoch every 5¼ steps (shuffles),
    /// crops and flips, mean subtraction, a validation split, warm-up, an lr
    /// milestone, and the loss summed since the last row. The network is mixnet
    /// on the digits: every layer and shortcut kind, channel counts that are
    /// not multiples of the 16-lane blocks.
    @Test func trainingIsReproducibleAndResumesExactly() throws {
        let dir = try CBuild.temporaryDirectory("train")
        let model = dir + "/mixnet.json"
        let spec = TestNetworks.mixnet(input: .image(channels: 1, height: 8, width: 8), classes: 10)
        try JSONEncoder().encode(ModelFile(networks: [spec])).write(to: URL(fileURLWithPath: model))
        // The first 100 training digits.
        let digits = try SafeTensors.read(CBuild.root + "/data/digits-train.safetensors")
        let images = digits["images"]!, labels = digits["labels"]!
        try SafeTensors.write([
            ("images", SafeTensors.Tensor(dtype: images.dtype, shape: [100] + images.shape.dropFirst(), bytes: images.bytes.prefix(100 * 64))),
            ("labels", SafeTensors.Tensor(dtype: labels.dtype, shape: [100], bytes: labels.bytes.prefix(100))),
        ], to: dir + "/small.safetensors")
        let options = ["--data", dir + "/small.safetensors", "--val", "16", "--batch", "16", "--pad", "2",
                       "--lr", "0.05", "--milestones", "18", "--lr-decay", "0.2", "--warmup", "--warmup-lr", "0.02",
                       "--warmup-error", "85", "--iterations", "24", "--seed", "5", "--print-every", "5", "--eval-every", "10",
                       "--checkpoint-every", "7", "--train-error-images", "32"]
        let threads = ["OMP_NUM_THREADS": "2"]

        // Stopped and resumed, as a user runs it.
        let stopped = dir + "/stopped"
        for arguments in [[model] + options + ["-o", stopped, "--stop-at", "3"],
                          [model, "-o", stopped, "--resume", "--stop-at", "13"],
                          [model, "-o", stopped, "--resume"]] {
            let r = try HostTools.run(CLITests.tool, ["train"] + arguments, environment: threads)
            #expect(r.status == 0, "\(arguments): \(r.output)")
        }
        // Twice without stopping, by the trainer that `train` built.
        let runs = [dir + "/first", dir + "/second", stopped]
        for run in runs.prefix(2) {
            let r = try HostTools.run(stopped + "/build/train-mixnet", options + ["--out", run], environment: threads)
            #expect(r.status == 0, "\(r.output)")
        }

        func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }
        for file in ["mixnet.safetensors", "checkpoint.safetensors", "mean.safetensors"] {
            let contents = try runs.map { try bytes($0 + "/" + file) }
            #expect(Set(contents).count == 1, "\(file) differs between the runs")
        }
        // train.csv without images_per_second and elapsed_seconds; checkpoint.state without elapsed.
        func csv(_ run: String) throws -> [String] {
            let lines = try String(contentsOfFile: run + "/train.csv", encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("#") }
            let header = lines[0].split(separator: ",", omittingEmptySubsequences: false)
            let timings = Set(["images_per_second", "elapsed_seconds"].compactMap { header.firstIndex(of: Substring($0)) })
            return lines.map { line in
                line.split(separator: ",", omittingEmptySubsequences: false).enumerated()
                    .filter { !timings.contains($0.offset) }.map(\.element).joined(separator: ",")
            }
        }
        func state(_ run: String) throws -> [String] {
            try String(contentsOfFile: run + "/checkpoint.state", encoding: .utf8).split(separator: "\n")
                .filter { !$0.hasPrefix("elapsed ") }.map(String.init)
        }
        let logs = try runs.map(csv)
        #expect(logs[0].count == 6, "\(logs[0])")  // the header, a row every 5 iterations and one at the end
        #expect(logs[0].last?.hasPrefix("24,0.01,") == true, "lr after the milestone: \(logs[0].last ?? "")")
        #expect(logs[1] == logs[0] && logs[2] == logs[0], "train.csv differs:\n\(logs.map { $0.joined(separator: "\n") }.joined(separator: "\n--\n"))")
        let states = try runs.map(state)
        #expect(states[1] == states[0] && states[2] == states[0], "checkpoint.state differs")
    }

    /// `--ranks 2`: two processes under mpirun take the steps of one (the
    /// same batches, split; batch norm synchronized), print one progress log,
    /// and a run stopped and resumed with the same ranks ends with the same
    /// bytes as one that was not.
    @Test(.enabled(if: DataParallelTests.mpiRuns, "OpenMPI (mpicc, mpirun) missing: make deps installs it"))
    func twoRanksTrainLikeOneAndResumeExactly() throws {
        _ = try #require(DataParallelTests.mpi, "OpenMPI (mpicc, mpirun) missing (CI=true)")
        let dir = try CBuild.temporaryDirectory("train-mpi")
        let model = dir + "/mixnet.json"
        let spec = TestNetworks.mixnet(input: .image(channels: 1, height: 8, width: 8), classes: 10)
        try JSONEncoder().encode(ModelFile(networks: [spec])).write(to: URL(fileURLWithPath: model))
        let options = ["--data", CBuild.root + "/data/digits-train.safetensors", "--val", "100", "--batch", "16", "--pad", "1",
                       "--no-flip", "--lr", "0.05", "--iterations", "12", "--seed", "3", "--print-every", "4",
                       "--eval-every", "6", "--checkpoint-every", "5", "--train-error-images", "64"]
        let threads = ["OMP_NUM_THREADS": "1"]
        func train(_ arguments: [String]) throws -> String {
            let r = try HostTools.run(CLITests.tool, ["train", model] + arguments, environment: threads)
            #expect(r.status == 0, "\(arguments): \(r.output)")
            return r.output
        }
        let whole = try train(options + ["-o", dir + "/one"])
        let ranked = try train(options + ["--ranks", "2", "-o", dir + "/two"])
        for arguments in [options + ["--ranks", "2", "-o", dir + "/stopped", "--stop-at", "3"],
                          ["--ranks", "2", "-o", dir + "/stopped", "--resume", "--stop-at", "8"],
                          ["--ranks", "2", "-o", dir + "/stopped", "--resume"]] {
            _ = try train(arguments)
        }
        func rows(_ output: String) -> [String] { output.split(separator: "\n").filter { $0.hasPrefix("iter ") }.map(String.init) }
        #expect(rows(ranked).count == rows(whole).count, "one progress log, from rank 0:\n\(ranked)")
        #expect(ranked.contains("2 ranks, 8 images each per step"), "\(ranked)")
        func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }
        for file in ["mixnet.safetensors", "checkpoint.safetensors", "mean.safetensors"] {
            #expect(try bytes(dir + "/two/" + file) == bytes(dir + "/stopped/" + file), "\(file): stopped and resumed differs")
        }
        // One process and two take the same steps, up to the summation order.
        func losses(_ run: String) throws -> [Double] {
            try String(contentsOfFile: run + "/train.csv", encoding: .utf8).split(separator: "\n")
                .filter { !$0.hasPrefix("#") && !$0.hasPrefix("iteration") }
                .map { Double($0.split(separator: ",", omittingEmptySubsequences: false)[2])! }
        }
        let (a, b) = (try losses(dir + "/one"), try losses(dir + "/two"))
        #expect(a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 * abs($0) }, "losses: 1 rank \(a), 2 ranks \(b)")
    }

    @Test func badDataIsReportedClearly() throws {
        let dir = try CBuild.temporaryDirectory("train")
        try Self.model.write(toFile: dir + "/tiny.swift", atomically: true, encoding: .utf8)
        try Data(repeating: 7, count: 40).write(to: URL(fileURLWithPath: dir + "/bad.safetensors"))
        let r = try CBuild.run(CLITests.tool, ["train", dir + "/tiny.swift", "--data", dir + "/bad.safetensors",
                                               "-o", dir + "/run", "--iterations", "5"])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("bad.safetensors"))
    }
}
