using System.Runtime.ExceptionServices;

namespace DeferRuntime.Torture.Harness;

/// <summary>
/// The load threads of one test (torture_create_kthread): dedicated, named, and guarded, so an exception
/// in one is kept for the report instead of killing the process, and a join that does not finish is a
/// reported hang instead of a hung tool.
/// </summary>
internal sealed class LoadThreads
{
    private readonly List<(Thread Thread, Box Failure)> _threads = [];

    private sealed class Box
    {
        public ExceptionDispatchInfo? Failure;
    }

    public int Count => _threads.Count;

    public void Start(string name, Action body)
    {
        var box = new Box();
        var thread = new Thread(() =>
        {
            try
            {
                body();
            }
#pragma warning disable CA1031 // a load thread's failure is a test result, reported with its thread's name
            catch (Exception e)
#pragma warning restore CA1031
            {
                box.Failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        { Name = name, IsBackground = true };
        _threads.Add((thread, box));
        thread.Start();
    }

    /// <summary>Joins every thread within <paramref name="ceiling"/> in all; returns what went wrong ("thread: error", "thread: hung").</summary>
    public IReadOnlyList<string> Join(TimeSpan ceiling)
    {
        var problems = new List<string>();
        var deadline = DateTime.UtcNow + ceiling;
        foreach (var (thread, box) in _threads)
        {
            var left = deadline - DateTime.UtcNow;
            if (!thread.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero))
            {
                problems.Add($"{thread.Name}: did not stop within {ceiling.TotalSeconds:0} s (hung, or deadlocked on the lock)");
                continue;
            }
            if (box.Failure is { } f)
            {
                problems.Add($"{thread.Name}: {f.SourceException.GetType().Name}: {f.SourceException.Message}");
            }
        }
        return problems;
    }

    /// <summary>True if a thread is still running after <see cref="Join"/> (the runtime must not be waited on then).</summary>
    public bool AnyAlive => _threads.Any(t => t.Thread.IsAlive);
}
