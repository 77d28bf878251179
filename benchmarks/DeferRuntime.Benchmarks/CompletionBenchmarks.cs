using BenchmarkDotNet.Attributes;
using DeferRuntime.Locking;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// complete() to waiter-running latency, as a ping-pong between two threads: the bench thread signals
/// "ping" and waits for "pong"; a partner thread waits for "ping" and signals "pong". One operation is a
/// round trip, i.e. two signal-to-waiter-running hand-overs: halve it for one.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread |--ping.complete-->| partner |
/// | bench thread |<--pong.complete--| partner |   (partner started in GlobalSetup)
/// </code>
/// Peers: <see cref="ManualResetEventSlim"/> (baseline: Set / Wait / Reset) and a fresh
/// <see cref="TaskCompletionSource"/> per signal waited on synchronously (the allocation shows).
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "Completion")]
public class CompletionBenchmarks
{
    private const int Ops = 256;

    private readonly Completion _ping = new(), _pong = new();
    private readonly ManualResetEventSlim _mPing = new(), _mPong = new();
    private TaskCompletionSource _tPing = new(), _tPong = new();
    private Thread? _partner;
    private volatile bool _stop;

    [GlobalSetup(Target = nameof(Completion_RoundTrip))]
    public void SetupCompletion() => StartPartner(() =>
    {
        _ping.WaitForCompletion();
        _pong.Complete();
    });

    [GlobalSetup(Target = nameof(ManualResetEventSlim_RoundTrip))]
    public void SetupMres() => StartPartner(() =>
    {
        _mPing.Wait();
        _mPing.Reset();
        _mPong.Set();
    });

    [GlobalSetup(Target = nameof(TaskCompletionSource_RoundTrip))]
    public void SetupTcs() => StartPartner(() =>
    {
        var ping = Volatile.Read(ref _tPing);
        ping.Task.Wait();
        Volatile.Write(ref _tPing, new TaskCompletionSource());
        Volatile.Read(ref _tPong).SetResult();
    });

    private void StartPartner(Action round)
    {
        _partner = new Thread(() =>
        {
            while (!_stop)
            {
                round();
            }
        })
        { IsBackground = true, Name = "partner" };
        _partner.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        // The partner is blocked in its wait: let it through once with the stop flag set.
        _stop = true;
        _ping.Complete();
        _mPing.Set();
        Volatile.Read(ref _tPing).TrySetResult();
        _partner?.Join(TimeSpan.FromSeconds(5));
        _mPing.Dispose();
        _mPong.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Completion_RoundTrip()
    {
        for (int i = 0; i < Ops; i++)
        {
            _ping.Complete();
            _pong.WaitForCompletion();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void ManualResetEventSlim_RoundTrip()
    {
        for (int i = 0; i < Ops; i++)
        {
            _mPing.Set();
            _mPong.Wait();
            _mPong.Reset();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void TaskCompletionSource_RoundTrip()
    {
        for (int i = 0; i < Ops; i++)
        {
            var pong = new TaskCompletionSource();
            Volatile.Write(ref _tPong, pong);
            Volatile.Read(ref _tPing).SetResult();
            pong.Task.Wait();
        }
    }
}
