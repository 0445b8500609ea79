import Foundation
import ResNetTestSupport
import Testing

/// The C runtime every generated file includes (safetensors I/O, error codes,
/// the seeded generator), tested on its own by Tests/CRuntime/run.sh: about
/// 70 malformed files, round trips, atomic replace, with gcc and clang.
@Suite(.temporaryFiles) struct CRuntimeTests {
    @Test func runtimeTestsPass() throws {
        let r = try CBuild.run("/bin/bash", [CBuild.root + "/Tests/CRuntime/run.sh"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains(" 0 failed"))
    }
}
