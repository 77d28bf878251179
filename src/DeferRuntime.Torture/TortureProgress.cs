namespace DeferRuntime.Torture;

/// <summary>
/// A progress report of a running torture run (what locktorture's stat_interval prints periodically):
/// which test is running, how far along it is, and a one-line status of its counts.
/// </summary>
/// <param name="Test">The running test ("spin_lock", "tasklet", "workqueue", "percpu", "shutdown").</param>
/// <param name="TestIndex">Its position, from 0.</param>
/// <param name="TestCount">How many tests the run has.</param>
/// <param name="Elapsed">How long it has been running.</param>
/// <param name="Duration">How long it is to run.</param>
/// <param name="Status">Its counts so far, one line.</param>
public sealed record TortureProgress(string Test, int TestIndex, int TestCount, TimeSpan Elapsed, TimeSpan Duration, string Status);
