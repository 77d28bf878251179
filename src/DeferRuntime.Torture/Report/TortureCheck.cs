namespace DeferRuntime.Torture;

/// <summary>
/// One invariant a torture test checked, in the spirit of locktorture's n_lock_fail: its name, whether it
/// held, and the numbers behind the verdict ("accepted 1200 = run 1100 + cancelled 100").
/// </summary>
/// <param name="Name">What was checked ("exclusion", "conservation", ...).</param>
/// <param name="Passed">True when it held.</param>
/// <param name="Detail">The numbers behind the verdict.</param>
public sealed record TortureCheck(string Name, bool Passed, string Detail);
