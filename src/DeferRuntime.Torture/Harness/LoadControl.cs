namespace DeferRuntime.Torture.Harness;

/// <summary>
/// The torture.c services every load thread of one test shares: the stop signal (torture_must_stop),
/// rcutorture-style stutter (torture_stutter: run, then pause every load thread, repeatedly) and the
/// shuffle epoch (torture_shuffle: each epoch, every load thread moves to another CPU).
/// </summary>
internal sealed class LoadControl : IDisposable
{
    /// <summary>Only catches a hang: a paused thread is always released by the next resume or by Stop.</summary>
    private static readonly TimeSpan Ceiling = TimeSpan.FromSeconds(30);

    private readonly CancellationTokenSource _stop = new();
    private readonly ManualResetEventSlim _go = new(initialState: true);
    private readonly TimeSpan _stutter;
    private readonly TimeSpan _shuffle;
    private Thread? _stutterThread;
    private Thread? _shuffleThread;
    private int _paused; // A: 1 while the stutter thread holds the load paused
    private int _epoch;  // A: bumped by the shuffle thread
    private long _stutters; // written by the stutter thread only

    public LoadControl(TimeSpan stutter, TimeSpan shuffle)
    {
        _stutter = stutter;
        _shuffle = shuffle;
    }

    /// <summary>torture_must_stop().</summary>
    public bool StopRequested => _stop.IsCancellationRequested;

    /// <summary>Signalled by <see cref="Stop"/>.</summary>
    public CancellationToken Stopping => _stop.Token;

    /// <summary>The shuffle epoch: load threads move when it changes.</summary>
    public int Epoch => Volatile.Read(ref _epoch);

    /// <summary>Pauses so far.</summary>
    public long Stutters => Volatile.Read(ref _stutters);

    /// <summary>Shuffle epochs so far.</summary>
    public long Shuffles => Volatile.Read(ref _epoch);

    public void Start()
    {
        if (_stutter > TimeSpan.Zero)
        {
            _stutterThread = new Thread(StutterMain) { Name = "torture_stutter", IsBackground = true };
            _stutterThread.Start();
        }
        if (_shuffle > TimeSpan.Zero)
        {
            _shuffleThread = new Thread(ShuffleMain) { Name = "torture_shuffle", IsBackground = true };
            _shuffleThread.Start();
        }
    }

    /// <summary>stutter_wait(): a load thread's pause point, between two operations.</summary>
    public void StutterWait()
    {
        if (Volatile.Read(ref _paused) != 0)
        {
            _go.Wait(Ceiling);
        }
    }

    /// <summary>Stops the load: sets the stop signal, releases paused threads, joins the control threads.</summary>
    public void Stop()
    {
        _stop.Cancel();
        Volatile.Write(ref _paused, 0);
        _go.Set();
        _stutterThread?.Join();
        _shuffleThread?.Join();
        _go.Set(); // the stutter thread may have paused once more before it saw the stop
    }

    public void Dispose()
    {
        Stop();
        _stop.Dispose();
        _go.Dispose();
    }

    private void StutterMain()
    {
        var stop = _stop.Token.WaitHandle;
        while (!stop.WaitOne(_stutter))
        {
            _go.Reset();
            Volatile.Write(ref _paused, 1);
            _stutters++;
            stop.WaitOne(_stutter);
            Volatile.Write(ref _paused, 0);
            _go.Set();
        }
    }

    private void ShuffleMain()
    {
        var stop = _stop.Token.WaitHandle;
        while (!stop.WaitOne(_shuffle))
        {
            Interlocked.Increment(ref _epoch);
        }
    }
}
