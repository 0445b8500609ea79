import Foundation

/// What the compiler must undo when it stops: the programs it started and the
/// temporary files and directories it made.
///
/// Every child `HostTools` starts runs in a process group of its own
/// (Foundation's `Process` puts it there on Linux), so the terminal's Ctrl-C
/// reaches only this process; killing a child kills its group and every
/// process descended from it (swiftc's frontend and linker, a model file's
/// own subprocesses; see `killGroup`). Children are registered here while
/// they run, temporary paths while they exist.
///
/// `installSignalHandlers` (the CLI calls it first) makes SIGINT, SIGTERM and
/// SIGHUP do this: kill every registered child and its descendants, remove every
/// registered path, and exit with 128 + the signal. A child started with
/// `forwardSignals` (the trainer, which checkpoints on SIGINT and exits by
/// itself) is sent the signal instead, and this process keeps going.
///
/// The handler itself only writes the signal number to a pipe (that is
/// async-signal-safe); a thread reads it and does the work. A caught signal
/// goes back to its default in a child after exec, where an ignored one
/// would stay ignored, which is why this is not `SIG_IGN` plus a dispatch
/// source.
public enum Cleanup {
    struct Child {
        var forwardSignals: Bool
    }

    struct State {
        var children: [pid_t: Child] = [:]
        var paths: Set<String> = []
        /// Set once a signal is being handled: children started after it are killed at once.
        var stopping = false
    }

    nonisolated(unsafe) private static var state = State()
    private static let lock = NSLock()

    /// Starts a child with `start` (which returns its pid) and registers it,
    /// under the lock, so that a signal cannot fall between the two.
    static func spawn(forwardSignals: Bool = false, _ start: () throws -> pid_t) rethrows -> pid_t {
        try lock.withLock {
            let pid = try start()
            state.children[pid] = Child(forwardSignals: forwardSignals)
            if state.stopping { killGroup(pid) }
            return pid
        }
    }

    /// The child has been waited for.
    static func forget(_ pid: pid_t) {
        lock.withLock { _ = state.children.removeValue(forKey: pid) }
    }

    /// Waits for the end when a signal is being handled: the child that just
    /// died was killed by the handler, which removes the temporary files and
    /// exits; this thread must not report the death as the child's failure.
    static func pauseIfStopping() {
        guard lock.withLock({ state.stopping }) else { return }
        while true { pause() }
    }

    /// Kills `pid`, its process group and every process descended from it.
    /// The group is not enough: swiftc starts its frontends in groups of
    /// their own, as Foundation does for any process a model file starts. So
    /// the tree is found in /proc and stopped (SIGSTOP, so nothing forks
    /// meanwhile) before everything is killed.
    static func killGroup(_ pid: pid_t, _ signal: Int32 = SIGKILL) {
        var tree: Set<pid_t> = [pid]
        for _ in 0..<4 {
            let found = descendants(of: pid).subtracting(tree)
            if found.isEmpty { break }
            for p in found { kill(p, SIGSTOP) }
            tree.formUnion(found)
        }
        if getpgid(pid) == pid { kill(-pid, signal) }
        for p in tree { kill(p, signal) }
    }

    /// Every live process whose parent chain leads to `root` (Linux /proc; empty elsewhere).
    static func descendants(of root: pid_t) -> Set<pid_t> {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var children: [pid_t: [pid_t]] = [:]
        for entry in entries {
            guard let pid = pid_t(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = pid_t(fields[1]) else { continue }
            children[parent, default: []].append(pid)
        }
        var result: Set<pid_t> = []
        var queue = [root]
        while let next = queue.popLast() {
            for child in children[next] ?? [] where result.insert(child).inserted { queue.append(child) }
        }
        return result
    }

    /// Registers a temporary file or directory, removed if this process is stopped by a signal.
    public static func register(_ path: String) {
        lock.withLock { _ = state.paths.insert(path) }
    }

    /// Forgets a registered path (it was renamed into place or removed).
    public static func unregister(_ path: String) {
        lock.withLock { _ = state.paths.remove(path) }
    }

    /// Removes a path and forgets it.
    public static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
        unregister(path)
    }

    /// A fresh registered directory `TMPDIR/resnet-compile-LABEL-UUID`.
    public static func makeTemporaryDirectory(_ label: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("resnet-compile-\(label)-\(UUID().uuidString)").path
        register(dir)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            unregister(dir)
            throw CompileError("cannot create the temporary directory \(dir): \(error.localizedDescription)")
        }
        return dir
    }

    /// Runs `body` with a fresh temporary directory, removed on every way out
    /// (return, throw, and signal once the handlers are installed).
    public static func withTemporaryDirectory<T>(_ label: String, _ body: (String) throws -> T) throws -> T {
        let dir = try makeTemporaryDirectory(label)
        defer { remove(dir) }
        return try body(dir)
    }

    nonisolated(unsafe) private static var signalPipe: (read: Int32, write: Int32) = (-1, -1)
    nonisolated(unsafe) private static var program = "resnet-compile"

    /// The signals that stop the compiler.
    public static let stoppingSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Makes SIGINT, SIGTERM and SIGHUP kill the children, remove the
    /// temporary paths and exit 128 + signal (see the type's comment).
    /// `program` prefixes the message printed to stderr.
    public static func installSignalHandlers(program name: String) {
        let installed = lock.withLock { () -> Bool in
            if signalPipe.read >= 0 { return true }
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { return true }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            signalPipe = (fds[0], fds[1])
            program = name
            return false
        }
        if installed { return }
        let reader = Thread {
            var byte: UInt8 = 0
            while true {
                let n = read(signalPipe.read, &byte, 1)
                if n == 1 { handle(Int32(byte)) } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
        reader.name = "resnet-compile signals"
        reader.start()
        // Returning from main while a signal is being handled must not beat the handler's exit status.
        atexit { Cleanup.pauseIfStopping() }
        // A parent can start us with these blocked (a thread of libdispatch
        // blocks them, and posix_spawn passes the mask on): unblock them here,
        // on the main thread, which the children are started from as well.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in stoppingSignals { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for sig in stoppingSignals {
            // glibc's signal() keeps the handler installed and restarts system calls.
            signal(sig) { sig in
                var byte = UInt8(truncatingIfNeeded: sig)
                _ = write(Cleanup.signalPipe.write, &byte, 1)
            }
        }
    }

    /// Runs on the reader thread for each signal received.
    private static func handle(_ sig: Int32) {
        let snapshot = lock.withLock { () -> State? in
            if let forward = state.children.first(where: { $0.value.forwardSignals }) {
                // Sharing our group, it had the terminal's signal already.
                if getpgid(forward.key) == forward.key { kill(forward.key, sig) }
                return nil
            }
            state.stopping = true
            for pid in state.children.keys { killGroup(pid) }
            return state
        }
        guard let snapshot else { return }
        let fm = FileManager.default
        // Children are gone (SIGKILL); a dying compiler could still have a
        // file open, so remove twice with a short pause between.
        for path in snapshot.paths { try? fm.removeItem(atPath: path) }
        if !snapshot.children.isEmpty {
            usleep(50_000)
            for path in snapshot.paths { try? fm.removeItem(atPath: path) }
        }
        let name = String(cString: strsignal(sig))
        FileHandle.standardError.write(Data("\(program): stopped by signal \(sig) (\(name)); child processes killed, temporary files removed\n".utf8))
        // _exit: other threads may be unwinding; nothing else should run now.
        _exit(128 + sig)
    }
}
