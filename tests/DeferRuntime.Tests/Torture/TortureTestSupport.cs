using DeferRuntime.Torture;

namespace DeferRuntime.Tests.Torture;

/// <summary>Torture options for tests: two CPUs, a fixed seed, short tests with stutter, shuffle and long holds all exercised.</summary>
internal static class TortureTest
{
    public static TortureOptions Options(TortureSuites suites, TimeSpan? duration = null, Action<TortureOptions>? configure = null)
    {
        var options = new TortureOptions
        {
            Suites = suites,
            CpuCount = 2,
            Seed = 6, // issue 6
            Duration = duration ?? TimeSpan.FromMilliseconds(Stress.Scale(300, 5_000)),
            Stutter = TimeSpan.FromMilliseconds(60),
            ShuffleInterval = TimeSpan.FromMilliseconds(20),
            LongHold = TimeSpan.FromMilliseconds(1),
            LongHoldProbability = 1e-4,
            // Priorities left alone, as TestRuntime does, so parallel tests share the machine evenly.
            ConfigureRuntime = r => r.Priorities = PriorityPolicy.None,
        };
        configure?.Invoke(options);
        return options;
    }

    public static void AssertPassed(TortureReport report)
    {
        Assert.True(report.Passed, "torture failed:\n" + string.Join("\n", report.Failures) + "\n" + report.Render());
    }
}
