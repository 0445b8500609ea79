import Foundation
import ResNetCompiler
import ResNetTestSupport
import Testing

/// Weight and checkpoint files under stress: saves killed midway, and the
/// loaders (runtime/runtime.c) and the trainer's data reader
/// (runtime/dataset.c) fuzzed with libFuzzer under AddressSanitizer and
/// UndefinedBehaviorSanitizer. `RESNET_KILL_ITERATIONS` (default 50 per
/// kind) and `RESNET_FUZZ_SECONDS` (default 30 per target) set how much.
@Suite(.serialized, .temporaryFiles) struct FileSafetyTests {
    static func setting(_ name: String, _ fallback: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? fallback
    }

    /// SIGKILL in the middle of resnet20_save and resnet20_save_checkpoint
    /// (the checked-in generated C), at random delays: the file being
    /// replaced is always the old one or the complete new one.
    @Test func killedSavesLeaveThePreviousFileIntact() throws {
        let dir = try CBuild.temporaryDirectory("kill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gen = CBuild.root + "/generated/resnet20"
        let exe = dir + "/kill_save"
        let serial = CBuild.Toolchain(cc: CBuild.standard.cc, openMP: false)
        try CBuild.compile([CBuild.root + "/Tests/CRuntime/kill_save.c", gen + "/resnet20.c"], output: exe, toolchain: serial,
                           extra: ["-I", gen, "-DNET=resnet20", "-DUNET=RESNET20", "-DNET_HEADER=\"resnet20.h\""])
        let iterations = Self.setting("RESNET_KILL_ITERATIONS", 50)
        let work = dir + "/files"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let r = try CBuild.run(exe, [work, String(iterations), "20261202"])
        print(r.output)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("\(2 * iterations) intact, 0 damaged"), "\(r.output)")
        // Some kills must have landed inside a save, or the test proved nothing.
        for kind in ["save", "checkpoint"] {
            let line = r.output.split(separator: "\n").first { $0.hasPrefix(kind + ":") } ?? ""
            let mid = line.split(separator: ";").last.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
            #expect(mid > 0, "\(kind): no kill landed mid-save: \(line)")
        }
    }

    /// The clang that can link libFuzzer (Swift's toolchain ships one), or why none.
    static let fuzzCompiler: Result<String, Error> = Result {
        guard let clang = HostTools.which("clang") else { throw CompileError("no clang on PATH") }
        let dir = try CBuild.temporaryDirectory("fuzzprobe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n"
            .write(toFile: dir + "/probe.c", atomically: true, encoding: .utf8)
        let r = try CBuild.run(clang, ["-fsanitize=fuzzer,address,undefined", dir + "/probe.c", "-o", dir + "/probe"])
        guard r.status == 0 else {
            throw CompileError("\(clang) cannot link -fsanitize=fuzzer,address,undefined:\n\(r.output)")
        }
        return clang
    }

    /// Builds Tests/Fuzz/fuzz_NAME.c and runs it for RESNET_FUZZ_SECONDS over a
    /// copy of its committed corpus (new inputs go to a scratch folder, so the
    /// repository is not changed); a crash fails the test and names the input.
    func fuzz(_ name: String) throws {
        let clang: String
        switch Self.fuzzCompiler {
        case .success(let c): clang = c
        case .failure(let e):
            // Without CI, a machine lacking the fuzzer runtime skips; CI must fuzz.
            if ISA.inCI { throw e }
            print("fuzz_\(name): skipped: \(e)")
            return
        }
        let dir = try CBuild.temporaryDirectory("fuzz-\(name)")
        var keep = false
        defer { if !keep { try? FileManager.default.removeItem(atPath: dir) } }
        let exe = dir + "/fuzz_" + name
        let build = try CBuild.run(clang, ["-g", "-O1", "-std=c11"] + CBuild.warningFlags + [
                                           "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                                           "-I", CBuild.root + "/runtime", CBuild.root + "/Tests/Fuzz/fuzz_\(name).c",
                                           "-o", exe, "-lm"])
        #expect(build.status == 0, "\(build.output)")
        guard build.status == 0 else { return }
        let corpus = CBuild.root + "/Tests/Fuzz/corpus/" + name
        let seeds = try FileManager.default.contentsOfDirectory(atPath: corpus)
        #expect(!seeds.isEmpty)
        let fresh = dir + "/new"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        let seconds = Self.setting("RESNET_FUZZ_SECONDS", 30)
        let r = try HostTools.run(exe, ["-max_total_time=\(seconds)", "-rss_limit_mb=2048", "-timeout=10",
                                        "-artifact_prefix=\(dir)/", "-print_final_stats=1", fresh, corpus],
                                  environment: ["ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"])
        let runs = r.output.split(separator: "\n").first { $0.hasPrefix("stat::number_of_executed_units:") }
            .map { String($0.split(separator: ":").last ?? "").trimmingCharacters(in: .whitespaces) } ?? "?"
        let found = (try? FileManager.default.contentsOfDirectory(atPath: fresh).count) ?? 0
        print("fuzz_\(name): \(runs) executions in \(seconds) s from \(seeds.count) seeds; \(found) new inputs (not kept)")
        if r.status != 0 {
            keep = true
            let message = "fuzz_\(name) failed (exit \(r.status)); the crashing input is in \(dir) (add it to \(corpus) once fixed):\n"
                + String(r.output.suffix(6000))
            Issue.record(Comment(rawValue: message))
        }
    }

    @Test func fuzzWeightAndCheckpointLoader() throws { try fuzz("weights") }

    @Test func fuzzTrainerDataReader() throws { try fuzz("dataset") }
}
