import ResNetTestSupport
import Testing

/// `@Suite(.temporaryFiles)`: the temporary directories the suite's tests make
/// (`CBuild.temporaryDirectory`, the models `BuiltModel` builds) are removed
/// when the suite ends, and kept, with their paths printed, when one of its
/// tests recorded an issue or `RESNET_COMPILE_KEEP_TEMP=1` is set.
///
/// The scope is the suite, not the test, because some suites share one built
/// model among their tests (`CAPITests.model`).
struct TemporaryFilesTrait: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    /// The suite gets the scope; each test case gets an issue watcher.
    func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        test.isSuite || testCase != nil ? self : nil
    }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        if test.isSuite {
            let scope = TemporaryFiles(label: test.name)
            defer { scope.finish() }
            try await TemporaryFiles.$current.withValue(scope) {
                do {
                    try await function()
                } catch {
                    scope.markFailed()
                    throw error
                }
            }
            return
        }
        let scope = TemporaryFiles.current
        let watcher: IssueHandlingTrait = .compactMapIssues { issue in
            scope?.markFailed()
            return issue
        }
        do {
            try await watcher.provideScope(for: test, testCase: testCase, performing: function)
        } catch {
            scope?.markFailed()
            throw error
        }
    }
}

extension Trait where Self == TemporaryFilesTrait {
    /// Removes the suite's temporary directories when it ends (kept on failure).
    static var temporaryFiles: Self { Self() }
}
