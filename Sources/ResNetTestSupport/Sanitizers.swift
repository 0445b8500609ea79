import Foundation
import ResNetCompiler

/// Builds of the generated C under the compilers' sanitizers, for the tests
/// that run it that way (SanitizerTests). Which compiler and link flags give a
/// working, warning-free sanitizer build differs between toolchains, so each
/// one is found by building and running a probe program: clang first, then
/// clang with the link flags Swift's clang needs, then gcc.
public enum Sanitizer: String, Sendable, CustomStringConvertible {
    /// AddressSanitizer + UndefinedBehaviorSanitizer (out-of-bounds and
    /// use-after-free accesses, leaks at exit, undefined arithmetic, shifts,
    /// misaligned pointers, float-to-int overflow); the first report ends the program.
    case addressAndUndefined = "address,undefined"
    /// ThreadSanitizer: any two accesses to one location from two threads, one
    /// a write, with nothing ordering them.
    case thread

    public var description: String { "-fsanitize=\(rawValue)" }

    /// Compile flags. -O0: the sanitizers need no optimisation to see every
    /// access, and clang takes over ten times longer at -O1 on the unrolled
    /// vector kernels with these checks in them.
    public var flags: [String] {
        let flags = ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=\(rawValue)"]
        return self == .thread ? flags : flags + ["-fno-sanitize-recover=all"]
    }

    /// Environment for a sanitized program: reports with stack traces, and a
    /// nonzero exit on the first one; with OpenMP under ThreadSanitizer, Archer loaded.
    public func environment(openMP: Bool) -> [String: String] {
        switch self {
        case .addressAndUndefined:
            return ["ASAN_OPTIONS": "detect_leaks=1"]
        case .thread:
            var options = ["TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"]
            if openMP, let archer = Self.archerLibrary {
                // Races inside the uninstrumented OpenMP runtime itself are not reported.
                options["TSAN_OPTIONS"]! += ":ignore_noninstrumented_modules=1"
                options["OMP_TOOL_LIBRARIES"] = archer
                options["ARCHER_OPTIONS"] = "verbose=1"
            }
            return options
        }
    }

    /// LLVM's Archer (libarcher.so, beside clang's libomp.so): an OpenMP tool that
    /// tells ThreadSanitizer how the parallel regions, barriers and reductions of
    /// the (uninstrumented) OpenMP runtime order the threads' accesses. Without
    /// it every parallel region reports false races. With verbose=1 it prints
    /// this line once it is active.
    public static let archerBanner = "Archer detected OpenMP application with TSan"

    /// Where libarcher.so is, if clang's OpenMP runtime has it.
    public static var archerLibrary: String? {
        guard let dir = HostTools.openMPLibraryDirectory else { return nil }
        let path = dir + "/libarcher.so"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// A toolchain that builds and runs code with this sanitizer here, or why
    /// there is none (probed once per sanitizer and OpenMP setting).
    public func toolchain(openMP: Bool) -> Result<CBuild.Toolchain, CBuild.BuildError> {
        switch (self, openMP) {
        case (.addressAndUndefined, false): Self.addressAndUndefinedSerial
        case (.addressAndUndefined, true): Self.addressAndUndefinedOpenMP
        case (.thread, false): Self.threadSerial
        case (.thread, true): Self.threadOpenMP
        }
    }

    private static let addressAndUndefinedSerial = probe(.addressAndUndefined, openMP: false)
    private static let addressAndUndefinedOpenMP = probe(.addressAndUndefined, openMP: true)
    private static let threadSerial = probe(.thread, openMP: false)
    private static let threadOpenMP = archerLibrary == nil
        ? .failure(CBuild.BuildError(description: "no libarcher.so beside libomp.so (LLVM's OpenMP support for ThreadSanitizer, in libomp-dev)"))
        : probe(.thread, openMP: true)

    /// The toolchains to try, in order.
    static func candidates(_ sanitizer: Sanitizer, openMP: Bool) -> [CBuild.Toolchain] {
        var result = [CBuild.Toolchain(cc: "clang", openMP: openMP, extra: sanitizer.flags)]
        // Swift's clang links with gold, which warns about symbols in ASan's runtime; lld does not.
        result.append(CBuild.Toolchain(cc: "clang", openMP: openMP, extra: sanitizer.flags + ["-fuse-ld=lld"]))
        // Swift's clang has a static TSan runtime with libdispatch interceptors in it,
        // which need the libdispatch and blocks runtime Swift ships beside its libraries.
        if sanitizer == .thread, let dispatch = swiftLibraryDirectory {
            result.append(CBuild.Toolchain(cc: "clang", openMP: openMP, extra: sanitizer.flags,
                                           libraries: ["-L", dispatch, "-Wl,-rpath," + dispatch, "-ldispatch", "-lBlocksRuntime"]))
        }
        // gcc's OpenMP runtime (libgomp) has no ThreadSanitizer support: only clang's libomp with Archer.
        if sanitizer == .addressAndUndefined || !openMP {
            result.append(CBuild.Toolchain(cc: "gcc", openMP: openMP, extra: sanitizer.flags))
        }
        return result.filter { HostTools.which($0.cc) != nil }
    }

    /// `usr/lib/swift/linux` of the Swift toolchain whose clang is on PATH, if that is where clang comes from.
    static var swiftLibraryDirectory: String? {
        guard let clang = HostTools.which("clang") else { return nil }
        let bin = URL(fileURLWithPath: clang).resolvingSymlinksInPath().deletingLastPathComponent()
        let dir = bin.deletingLastPathComponent().appendingPathComponent("lib/swift/linux").path
        return FileManager.default.fileExists(atPath: dir + "/libdispatch.so") ? dir : nil
    }

    /// The first candidate that builds a small program (a parallel loop with
    /// OpenMP) with no diagnostic and runs it cleanly.
    static func probe(_ sanitizer: Sanitizer, openMP: Bool) -> Result<CBuild.Toolchain, CBuild.BuildError> {
        let program = """
            #include <stdio.h>
            int main(void)
            {
                double sum = 0.0;
            #ifdef _OPENMP
            #pragma omp parallel for reduction(+ : sum)
            #endif
                for (int i = 0; i < 64; i++) sum += (double)i;
                printf("sum %g\\n", sum);
                return 0;
            }

            """
        var tried: [String] = []
        do {
            let dir = try CBuild.temporaryDirectory("probe")
            try program.write(toFile: dir + "/probe.c", atomically: true, encoding: .utf8)
            for toolchain in candidates(sanitizer, openMP: openMP) where !openMP || HostTools.openMPFlags(for: toolchain.cc) != nil {
                do {
                    try CBuild.compile([dir + "/probe.c"], output: dir + "/probe", toolchain: toolchain)
                    let run = try HostTools.run(dir + "/probe", [], environment: sanitizer.environment(openMP: openMP))
                    let archer = sanitizer == .thread && openMP ? run.output.contains(archerBanner) : true
                    if run.status == 0 && run.output.contains("sum 2016\n") && archer { return .success(toolchain) }
                    tried.append("\(toolchain): the probe exited \(run.status): \(run.output.prefix(300))")
                } catch {
                    tried.append("\(toolchain): \(String(describing: error).prefix(300))")
                }
            }
        } catch {
            tried.append(String(describing: error))
        }
        return .failure(CBuild.BuildError(description: "no toolchain builds \(sanitizer)\(openMP ? " -fopenmp" : "") here: "
                                          + (tried.isEmpty ? "no C compiler found" : tried.joined(separator: "; "))))
    }
}
