using System.Runtime.CompilerServices;
using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

/// <summary>
/// The default lock validator is on for the whole test run: every lock the tests create (except the
/// seeded bugs, which use private validators) is validated, and each locking test class checks on
/// dispose that nothing was reported.
/// </summary>
internal static class ValidatorOn
{
    [ModuleInitializer]
    internal static void EnableForTheTestRun() => LockValidator.Default.Enable();
}

/// <summary>Base of the locking tests: fails a test after which the default validator has a report.</summary>
public abstract class ValidatedTest : IDisposable
{
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        var reports = LockValidator.Default.Reports;
        Assert.True(reports.Count == 0, "lock validator reported: " + string.Join("\n", reports));
    }
}
