using System.Runtime.InteropServices;

namespace DeferRuntime.Cli.Storm;

/// <summary>
/// Ctrl-C (SIGINT) and SIGTERM during a storm: the first ends the storm — generation stops, the events
/// already generated drain, the full report is printed and every requested file written (JSON
/// <c>"interrupted": true</c>), exit code 130; a second signal exits at once (the default action).
/// </summary>
/// <remarks>
/// One instance per command run, so in-process runs (the tests) do not share the flag; while it is
/// registered the signals no longer kill the process the first time.
/// </remarks>
internal sealed class StormInterrupt : IDisposable
{
    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly TextWriter? _notice;
    private int _presses; // A

    private StormInterrupt(TextWriter? notice) => _notice = notice;

    /// <summary>Listens for SIGINT and SIGTERM until disposed; notices go to <paramref name="notice"/> (stderr).</summary>
    public static StormInterrupt Listen(TextWriter? notice)
    {
        var interrupt = new StormInterrupt(notice);
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM })
        {
            try
            {
                interrupt._registrations.Add(PosixSignalRegistration.Create(signal, interrupt.Handle));
            }
            catch (PlatformNotSupportedException)
            {
                // SIGTERM off Unix: Ctrl-C still works.
            }
        }
        return interrupt;
    }

    /// <summary>An interrupt nobody can trigger but <see cref="Request"/> (tests).</summary>
    public static StormInterrupt Manual() => new(null);

    /// <summary>True once a signal asked the storm to end.</summary>
    public bool Requested => Volatile.Read(ref _presses) > 0;

    /// <summary>Asks the storm to end, as a first Ctrl-C does.</summary>
    public void Request() => Interlocked.Increment(ref _presses);

    private void Handle(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref _presses) == 1)
        {
            context.Cancel = true;
            _notice?.WriteLine($"{(context.Signal == PosixSignal.SIGINT ? "^C" : "SIGTERM")}: ending the storm; the events generated drain, then the full report (Ctrl-C again to exit at once)");
            return;
        }
        // The second signal: the default action, the process ends now.
    }

    public void Dispose()
    {
        foreach (var r in _registrations)
        {
            r.Dispose();
        }
    }
}
