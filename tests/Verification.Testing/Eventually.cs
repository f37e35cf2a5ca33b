namespace Verification.Testing;

/// <summary>Waits on a condition with a timeout instead of sleeping and hoping.</summary>
public static class Eventually
{
    public static async Task<T> Get<T>(Func<Task<T?>> probe, TimeSpan? timeout = null, string? what = null) where T : class
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            var value = await probe();
            if (value is not null) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what ?? "a condition"}");
            await Task.Delay(25);
        }
    }

    public static async Task<T> Get<T>(Func<Task<T?>> probe, TimeSpan? timeout = null, string? what = null) where T : struct
    {
        T? found = null;
        await True(async () => (found = await probe()) is not null, timeout, what);
        return found!.Value;
    }

    public static async Task True(Func<Task<bool>> probe, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (!await probe())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what ?? "a condition"}");
            await Task.Delay(25);
        }
    }
}
