using System.Threading.Channels;
using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;
using Microsoft.Extensions.Logging;

namespace DeferRuntime.Hosting;

/// <summary>
/// Forwards the runtime's reports to <see cref="ILogger"/>: oopses and warnings from
/// <see cref="Runtime.Faults"/> (spurious-line disables and workqueue stalls among them, told apart by
/// <see cref="FaultRecord.Kind"/>) and the lock validator's reports.
/// </summary>
/// <remarks>
/// A fault is announced on the thread that caught it, which may be cpu/N in hard-IRQ context. Logging
/// providers may block (a file, a full console queue), so the handler only hands the record to a bounded
/// channel and a thread-pool reader logs it: the kernel's printk_deferred(). Past 1024 waiting reports new
/// ones are counted and dropped rather than queued without bound. <see cref="LockValidator.Default"/> is
/// process-wide: its reports reach every host's log in the process.
/// </remarks>
internal sealed class ReportForwarder : IDisposable
{
    private const int Capacity = 1024;

    private readonly Runtime _runtime;
    private readonly LockValidator _validator;
    private readonly ILogger _logger;
    private readonly Channel<object> _reports = Channel.CreateBounded<object>(new BoundedChannelOptions(Capacity)
    {
        FullMode = BoundedChannelFullMode.Wait, // TryWrite then fails instead of blocking: the caller counts a drop
        SingleReader = true,
        AllowSynchronousContinuations = false, // never run the reader on the reporting (CPU) thread
    });
    private readonly Task _reader;
    private long _dropped; // A
    private bool _panicLogged; // reader only

    public ReportForwarder(Runtime runtime, LockValidator validator, ILogger logger)
    {
        _runtime = runtime;
        _validator = validator;
        _logger = logger;
        _reader = Task.Run(ReadAsync);
        runtime.Faults.Faulted += OnFault;
        _validator.Reported += OnLockValidatorReport;
    }

    private void OnFault(object? sender, FaultRecord record) => Enqueue(record);

    private void OnLockValidatorReport(object? sender, LockValidatorReport report) => Enqueue(report);

    private void Enqueue(object report)
    {
        if (!_reports.Writer.TryWrite(report))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private async Task ReadAsync()
    {
        await foreach (var report in _reports.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            Write(report);
        }
    }

    private void Write(object report)
    {
        if (report is LockValidatorReport lockdep)
        {
            Log.LockValidatorReport(_logger, lockdep.Kind, lockdep.Message);
            return;
        }
        var r = (FaultRecord)report;
        switch (r.Kind)
        {
            case FaultKind.SpuriousIrqDisabled:
                Log.SpuriousIrqDisabled(_logger, r.Cpu, r.Source, r.Exception.Message);
                break;
            case FaultKind.WorkqueueStall:
                Log.WorkqueueStall(_logger, r.Cpu, r.Exception.Message);
                break;
            case FaultKind.Warning:
                Log.KernelWarning(_logger, r.Cpu, r.Thread, r.Source, r.Exception.Message);
                break;
            default:
                Log.Oops(_logger, r.Exception, r.Cpu, r.Thread, r.Source, r.Exception.Message);
                if (!_panicLogged && _runtime.Panic is { } panic)
                {
                    _panicLogged = true;
                    Log.Panic(_logger, panic.Message);
                }
                break;
        }
    }

    /// <summary>Stops taking reports and returns once every report taken has been logged.</summary>
    public async Task FlushAsync()
    {
        Unsubscribe();
        _reports.Writer.TryComplete();
        await _reader.ConfigureAwait(false);
        long dropped = Interlocked.Exchange(ref _dropped, 0);
        if (dropped > 0)
        {
            Log.ReportsDropped(_logger, dropped, Capacity);
        }
    }

    private void Unsubscribe()
    {
        _runtime.Faults.Faulted -= OnFault;
        _validator.Reported -= OnLockValidatorReport;
    }

    public void Dispose()
    {
        if (!_reader.IsCompleted)
        {
            FlushAsync().GetAwaiter().GetResult();
        }
        Unsubscribe();
    }
}
