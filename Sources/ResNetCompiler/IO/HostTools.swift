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
    /// stdout and stderr together. The status is 128 + N when signal N ended it.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                           in directory: String? = nil) throws -> (status: Int32, output: String) {
        let r = try execute(executable, arguments, environment: extra, in: directory)
        return (r.status, r.output)
    }

    /// How a program run by `execute` ended.
    public struct Finished: Sendable {
        /// The exit status, or 128 + the signal that ended it.
        public var status: Int32
        /// The signal that ended it, if one did.
        public var signal: Int32?
        /// Stdout and stderr together.
        public var output: String
    }

    /// A program that `execute` stopped because it ran past its time limit.
    public struct TimedOut: Error, CustomStringConvertible {
        public var executable: String
        public var seconds: Double
        /// What it printed before it was stopped.
        public var output: String
        public var description: String { "\(executable) did not finish within \(seconds) s" }
    }

    /// Runs a program in a process group of its own, registered with `Cleanup`
    /// while it runs (so a signal to this process kills it and what it
    /// started), with stdin from /dev/null. With a `timeout` the group is
    /// killed after that many seconds and `TimedOut` is thrown. Whatever is
    /// left of the group once the program exits (a background process holding
    /// its output) is killed too.
    public static func execute(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                               in directory: String? = nil, timeout: Double? = nil) throws -> Finished {
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
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = pipe
        process.standardError = pipe
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        let pid: pid_t
        do {
            pid = try Cleanup.spawn {
                try process.run()
                return process.processIdentifier
            }
        } catch {
            throw CompileError("cannot run \(executable): \(error.localizedDescription)")
        }
        defer { Cleanup.forget(pid) }
        // Read while it runs, so that a full pipe never blocks the program.
        let output = OutputCollector(pipe.fileHandleForReading)
        var timedOut = false
        if let timeout, exited.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            Cleanup.killGroup(pid)
            exited.wait()
        }
        process.waitUntilExit()
        Cleanup.pauseIfStopping()
        if !output.wait(seconds: 2) {
            // Someone in its group still holds the pipe: the group is not
            // empty, so its id is still ours to kill.
            kill(-pid, SIGKILL)
            _ = output.wait(seconds: 10)
        }
        let text = String(decoding: output.data, as: UTF8.self)
        if timedOut { throw TimedOut(executable: executable, seconds: timeout ?? 0, output: text) }
        if process.terminationReason == .uncaughtSignal {
            return Finished(status: 128 + process.terminationStatus, signal: process.terminationStatus, output: text)
        }
        return Finished(status: process.terminationStatus, signal: nil, output: text)
    }

    /// Reads a pipe to its end on a thread of its own.
    final class OutputCollector: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var bytes = Data()
        private var finished = false

        init(_ handle: FileHandle) {
            Thread.detachNewThread { [self] in
                bytes = handle.readDataToEndOfFile()
                done.signal()
            }
        }

        /// Whether the pipe reached its end within `seconds`.
        func wait(seconds: Double) -> Bool {
            if finished { return true }
            finished = done.wait(timeout: .now() + seconds) == .success
            return finished
        }

        /// What was read (call after `wait` returned true).
        var data: Data { finished ? bytes : Data() }
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
