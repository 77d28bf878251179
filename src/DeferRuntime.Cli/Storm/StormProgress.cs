using System.Diagnostics;
using System.Globalization;
using DeferRuntime.Cli.Storm.Paths;
using Spectre.Console;

namespace DeferRuntime.Cli.Storm;

/// <summary>
/// Live progress while a storm runs: Spectre's progress bars on a terminal, a plain line per second
/// when the output is redirected (CI, tests, a pipe), nothing with --no-progress. The runner hands it
/// its wait: <see cref="Track"/> returns when <c>done</c> says so.
/// </summary>
internal abstract class StormProgress
{
    public static StormProgress Create(IAnsiConsole console, bool enabled)
    {
        if (!enabled)
        {
            return new Silent();
        }
        return console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi ? new Live(console) : new Plain(console);
    }

    /// <summary>Shows <paramref name="paths"/>' progress toward their expected event counts until <paramref name="done"/> (polled every 100 ms).</summary>
    public abstract void Track(string phase, IReadOnlyList<StormPath> paths, IReadOnlyDictionary<StormPath, double> expected, Func<bool> done);

    protected static void Poll(Func<bool> done, Action each, TimeSpan every)
    {
        var clock = Stopwatch.StartNew();
        var next = TimeSpan.Zero;
        while (!done())
        {
            if (clock.Elapsed >= next)
            {
                each();
                next = clock.Elapsed + every;
            }
            Thread.Sleep(50);
        }
    }

    private sealed class Silent : StormProgress
    {
        public override void Track(string phase, IReadOnlyList<StormPath> paths, IReadOnlyDictionary<StormPath, double> expected, Func<bool> done) =>
            Poll(done, () => { }, TimeSpan.FromSeconds(1));
    }

    private sealed class Plain(IAnsiConsole console) : StormProgress
    {
        public override void Track(string phase, IReadOnlyList<StormPath> paths, IReadOnlyDictionary<StormPath, double> expected, Func<bool> done)
        {
            var clock = Stopwatch.StartNew();
            Poll(done, () =>
            {
                long generated = paths.Sum(p => p.Generated), handled = paths.Sum(p => p.Handled);
                console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{phase}] {clock.Elapsed.TotalSeconds,5:0.0} s: generated {generated:N0}, handled {handled:N0}"));
            }, TimeSpan.FromSeconds(1));
        }
    }

    private sealed class Live(IAnsiConsole console) : StormProgress
    {
        public override void Track(string phase, IReadOnlyList<StormPath> paths, IReadOnlyDictionary<StormPath, double> expected, Func<bool> done)
        {
            console.Progress()
                .AutoClear(true)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var tasks = paths.ToDictionary(p => p, p => ctx.AddTask($"{phase} {p.Name,-10}", maxValue: Math.Max(1, expected[p])));
                    Poll(done, () =>
                    {
                        foreach (var (path, task) in tasks)
                        {
                            task.MaxValue = Math.Max(task.MaxValue, path.Generated);
                            task.Value = path.Handled;
                            task.Description = string.Create(CultureInfo.InvariantCulture, $"{phase} {path.Name,-10} {path.Handled,10:N0}/{path.Generated:N0}");
                        }
                    }, TimeSpan.FromMilliseconds(100));
                    foreach (var (path, task) in tasks)
                    {
                        task.Value = task.MaxValue;
                    }
                });
        }
    }
}
