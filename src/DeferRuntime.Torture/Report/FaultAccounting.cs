namespace DeferRuntime.Torture;

/// <summary>
/// The books of fault injection for one test, torture's counterpart of the kernel's fault-injection
/// framework (lib/fault-inject.c): how many handler or work-function calls were made to throw,
/// how many of those the runtime reported in Runtime.Faults (every one must be), and any fault the test
/// did not inject (a WARN or an oops of the runtime's own, which fails the test).
/// </summary>
public sealed class FaultAccounting
{
    /// <summary>Calls made to throw (every FaultEvery-th).</summary>
    public long Injected { get; init; }

    /// <summary>Injected faults the runtime reported in Runtime.Faults.</summary>
    public long Reported { get; init; }

    /// <summary>Faults the test did not inject, as the runtime recorded them (the first few).</summary>
    public IReadOnlyList<string> Unexpected { get; init; } = [];

    /// <summary>How many faults the test did not inject.</summary>
    public long UnexpectedCount { get; init; }

    internal TortureCheck Check() => new(
        "faults",
        Reported == Injected && UnexpectedCount == 0,
        $"injected {Injected}, reported {Reported}, unexpected {UnexpectedCount}{(Unexpected.Count > 0 ? ": " + string.Join("; ", Unexpected) : "")}");
}
