import Foundation
import ResNetCompiler
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

    /// Stopping and resuming gives the same weights, byte for byte.
    @Test func resumeContinuesExactly() throws {
        let straight = try CBuild.temporaryDirectory("train")
        let resumed = try CBuild.temporaryDirectory("train")
        for dir in [straight, resumed] { try Self.model.write(toFile: dir + "/tiny.swift", atomically: true, encoding: .utf8) }
        #expect(try train(straight, ["--iterations", "30"]).status == 0)
        #expect(try train(resumed, ["--iterations", "30", "--stop-at", "17"]).status == 0)
        let r = try CBuild.run(CLITests.tool, ["train", resumed + "/tiny.swift", "-o", resumed + "/run", "--resume"])
        #expect(r.status == 0, "\(r.output)")
        let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/run/tinydigits.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: resumed + "/run/tinydigits.safetensors"))
        #expect(a == b)
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
