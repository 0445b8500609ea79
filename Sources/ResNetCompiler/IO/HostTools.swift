import Foundation

/// The programs the compiler runs on this machine — swiftc for model files, the
/// C compiler for the trainer, the programs it builds — and how to find them.
/// One place for the PATH search, the process plumbing and the OpenMP flags,
/// shared by the front end, the trainer and the tests.
public enum HostTools {
    /// The executable `program` names: a path as it is, else the first match on PATH.
    public static func which(_ program: String) -> String? {
        let fm = FileManager.default
        if program.contains("/") { return fm.isExecutableFile(atPath: program) ? program : nil }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/\(program)"
            if fm.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Runs a program to completion with `extra` added to the environment;
    /// stdout and stderr together.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                           in directory: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: which(executable) ?? executable)
        process.arguments = arguments
        if !extra.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in extra { env[k] = v }
            process.environment = env
        }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            throw CompileError("cannot run \(executable): \(error.localizedDescription)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Where libomp.so is: clang's -fopenmp links libomp, which Debian's
    /// libomp-dev installs under /usr/lib/llvm-N/lib, off the default search path.
    public static let openMPLibraryDirectory: String? = {
        let fm = FileManager.default
        var candidates = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"]
        if let dirs = try? fm.contentsOfDirectory(atPath: "/usr/lib") {
            candidates += dirs.filter { $0.hasPrefix("llvm-") }.sorted().reversed().map { "/usr/lib/\($0)/lib" }
        }
        return candidates.first { fm.fileExists(atPath: $0 + "/libomp.so") }
    }()

    /// The flags that compile and link C with OpenMP using `cc`; nil when it
    /// cannot (clang with no libomp.so to link).
    public static func openMPFlags(for cc: String) -> [String]? {
        guard cc.contains("clang") else { return ["-fopenmp"] }
        guard let dir = openMPLibraryDirectory else { return nil }
        return ["-fopenmp", "-L", dir, "-Wl,-rpath," + dir]
    }
}
